"""Audio files in and out with PyAV (FFmpeg), for the ``/v1/audio`` endpoints: uploads decoded
to 16 kHz mono, speech encoded as it is made; and for the conversation records, whose two mono
tracks are encoded as they come and mixed into one stereo file on request. Here because PyAV
stays inside ``rtc/``.

An upload's container is recognised from its first bytes and FFmpeg is told to use that
demuxer only: probing anything would let a playlist (HLS, concat) open other files or URLs.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

import av
import numpy as np

from realtalk.audio.pcm import Int16Array

log = logging.getLogger("realtalk.audio")

EncodedFormat = Literal["mp3", "opus", "aac", "flac"]
ENCODERS: dict[EncodedFormat, tuple[str, str, str]] = {
    # format: (muxer, codec, Content-Type), as OpenAI's /v1/audio/speech sends them
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
}


class AudioFileError(ValueError):
    """The upload is not audio this server can decode; the message says why."""


def _demuxer(head: bytes) -> str | None:
    """The FFmpeg demuxer for a file starting with ``head`` (OpenAI's accepted types)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"  # webm too
    if head[4:8] == b"ftyp":
        return "mp4"  # m4a, mp4
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # ADTS has layer 00
    return None


def _mono_pieces(container: Any, rate: int) -> Iterator[Int16Array]:
    """The first audio stream of an open file, decoded to int16 mono at ``rate``."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    for frame in container.decode(container.streams.audio[0]):
        for out in resampler.resample(frame):
            yield np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1)
    for out in resampler.resample(None):
        yield np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1)


def decode_audio(data: bytes, rate: int, max_seconds: float) -> Int16Array:
    """The first audio stream of a file as int16 mono at ``rate`` (blocking). Raises
    :class:`AudioFileError` for anything else, or for audio longer than ``max_seconds``."""
    demuxer = _demuxer(data[:12])
    if demuxer is None:
        raise AudioFileError(
            "The file is not a supported audio format (flac, m4a, mp3, mp4, ogg, wav or webm)."
        )
    limit = int(max_seconds * rate)
    pieces: list[Int16Array] = []
    total = 0
    try:
        with av.open(io.BytesIO(data), mode="r", format=demuxer) as container:
            if not container.streams.audio:
                raise AudioFileError("The file has no audio stream.")
            for piece in _mono_pieces(container, rate):
                pieces.append(piece)
                total += len(piece)
                if total > limit:
                    raise AudioFileError(
                        f"The audio is longer than {max_seconds:.0f} seconds, the most this "
                        "server transcribes at once."
                    )
    except av.FFmpegError as exc:
        raise AudioFileError(f"The audio could not be decoded ({demuxer}): {exc}.") from None
    if not pieces or total == 0:
        raise AudioFileError("The file contains no audio.")
    return np.concatenate(pieces)


class _Sink:
    """Where the muxer writes; the encoder hands the bytes on as they come."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, chunk: Any) -> int:
        self.data += bytes(chunk)
        return len(chunk)

    def take(self) -> bytes:
        out, self.data = bytes(self.data), bytearray()
        return out


class AudioEncoder:
    """Streaming encoder of int16 mono (or, with ``channels=2``, stereo: rows of two
    samples): ``encode`` pieces, then ``close``; each returns the file's bytes made so far
    (blocking; small pieces are fast enough for the event loop's worker threads)."""

    def __init__(self, fmt: EncodedFormat, rate: int, channels: Literal[1, 2] = 1) -> None:
        muxer, codec, self.content_type = ENCODERS[fmt]
        self.rate = rate
        self._layout = "mono" if channels == 1 else "stereo"
        self._sink = _Sink()
        self._container: Any = av.open(self._sink, "w", format=muxer)
        self._stream: Any = self._container.add_stream(codec, rate=rate, layout=self._layout)
        self._pts = 0

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)

    def encode(self, samples: Int16Array) -> bytes:
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),  # interleaved
                format="s16",
                layout=self._layout,
            )
            frame.sample_rate = self.rate
            frame.pts = self._pts
            self._pts += len(samples)
            self._mux(self._stream.encode(frame))
        return self._sink.take()

    def close(self) -> bytes:
        self._mux(self._stream.encode(None))
        self._container.close()
        return self._sink.take()


def encodable(fmt: str) -> EncodedFormat | None:
    """``fmt`` when this FFmpeg build has its encoder, else None."""
    for name, (_, codec, _) in ENCODERS.items():
        if name == fmt:
            try:
                av.codec.Codec(codec, "w")
            except Exception:  # this FFmpeg build lacks it
                return None
            return name
    return None


MIX_CHUNK_S = 2
"""The stereo mix is made this many seconds at a time (memory stays small however long the
conversation)."""


def _pcm(path: Path | None, rate: int) -> Iterator[Int16Array]:
    """A track's audio as int16 mono pieces at ``rate``; none for a missing track. A file cut
    short (the server stopped while writing it) ends where it can no longer be read."""
    if path is None or not path.exists():
        return
    try:
        with av.open(str(path), mode="r", format="ogg") as container:
            yield from _mono_pieces(container, rate)
    except (av.FFmpegError, IndexError) as exc:
        log.warning("audio file %s read up to an error (%s)", path.name, exc)


class _Reader:
    """Takes exact lengths from a stream of pieces, silence once it has ended."""

    def __init__(self, pieces: Iterator[Int16Array]) -> None:
        self._pieces = pieces
        self._buffer = np.zeros(0, dtype=np.int16)
        self.ended = False

    def take(self, n: int) -> tuple[Int16Array, int]:
        """``n`` samples, and how many of them are the track's (the rest is padding)."""
        while len(self._buffer) < n and not self.ended:
            piece = next(self._pieces, None)
            if piece is None:
                self.ended = True
            else:
                self._buffer = np.concatenate([self._buffer, piece])
        out = np.zeros(n, dtype=np.int16)
        got = self._buffer[:n]
        out[: len(got)] = got
        self._buffer = self._buffer[n:]
        return out, len(got)

    @property
    def drained(self) -> bool:
        return self.ended and len(self._buffer) == 0


def write_stereo(left: Path | None, right: Path | None, out: BinaryIO, rate: int) -> None:
    """Mix two mono tracks on one timeline into one stereo Ogg/Opus file (left, right; a
    missing or shorter track is silence), as long as the longer track (blocking)."""
    readers = (_Reader(_pcm(left, rate)), _Reader(_pcm(right, rate)))
    encoder = AudioEncoder("opus", rate, channels=2)
    step = MIX_CHUNK_S * rate
    while not all(r.drained for r in readers):
        (a, real_a), (b, real_b) = readers[0].take(step), readers[1].take(step)
        used = max(real_a, real_b)  # the last piece: no padding past the longer track
        a, b = a[:used], b[:used]
        out.write(encoder.encode(np.column_stack([a, b])))
    out.write(encoder.close())
