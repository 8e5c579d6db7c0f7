"""Audio files in and out with PyAV (FFmpeg), for the ``/v1/audio`` endpoints: uploads decoded
to 16 kHz mono, speech encoded as it is made. Here because PyAV stays inside ``rtc/``.

An upload's container is recognised from its first bytes and FFmpeg is told to use that
demuxer only: probing anything would let a playlist (HLS, concat) open other files or URLs.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import av
import numpy as np

from realtalk.audio.pcm import Int16Array

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
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    pieces.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))
                    total += len(pieces[-1])
                if total > limit:
                    raise AudioFileError(
                        f"The audio is longer than {max_seconds:.0f} seconds, the most this "
                        "server transcribes at once."
                    )
            for out in resampler.resample(None):
                pieces.append(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))
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
    """Streaming encoder of int16 mono: ``encode`` pieces, then ``close``; each returns the
    file's bytes made so far (blocking; small pieces are fast enough for the event loop's
    worker threads)."""

    def __init__(self, fmt: EncodedFormat, rate: int) -> None:
        muxer, codec, self.content_type = ENCODERS[fmt]
        self.rate = rate
        self._sink = _Sink()
        self._container: Any = av.open(self._sink, "w", format=muxer)
        self._stream: Any = self._container.add_stream(codec, rate=rate, layout="mono")
        self._pts = 0

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._container.mux(packet)

    def encode(self, samples: Int16Array) -> bytes:
        if len(samples):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
                format="s16",
                layout="mono",
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
