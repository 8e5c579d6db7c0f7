"""The user's microphone track: Opus decoded by aiortc, resampled by PyAV to 16 kHz mono."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, AudioResampler

from realtalk.audio.pcm import INTERNAL_RATE, Int16Array


async def pump_inbound(track: MediaStreamTrack, deliver: Callable[[Int16Array], None]) -> None:
    """Read frames until the track ends, handing 16 kHz int16 mono to ``deliver``."""
    resampler = AudioResampler(format="s16", layout="mono", rate=INTERNAL_RATE)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(frame, AudioFrame):
            continue
        for out in resampler.resample(frame):
            deliver(np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1))
