"""An aiortc peer for one Realtime call: answers the offer, carries audio and the event channel.

Knows nothing of sessions: it hands decoded microphone audio and channel messages to
callbacks, and sends what it is given. ``iceServers`` is empty unless configured (aiortc would
otherwise use a public STUN server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from realtalk.audio.pcm import Int16Array
from realtalk.rtc import jitter
from realtalk.rtc.inbound import pump_inbound
from realtalk.rtc.outbound import OutboundAudioTrack

log = logging.getLogger("realtalk.rtc")

EVENTS_CHANNEL = "oai-events"


class BadOffer(ValueError):
    """The offer SDP cannot start a call; the message says why."""


@dataclass(frozen=True)
class IceServer:
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class RealtimePeer:
    def __init__(
        self,
        *,
        ice_servers: list[IceServer],
        on_audio: Callable[[Int16Array], None],
        on_message: Callable[[str | bytes], None],
        on_playout: Callable[[str, str], None],
        on_ended: Callable[[str], None],
    ) -> None:
        self.pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                    for s in ice_servers
                ]
            )
        )
        self.output = OutboundAudioTrack(on_playout)
        self.channel: RTCDataChannel | None = None
        self._on_audio = on_audio
        self._on_message = on_message
        self._on_ended = on_ended
        self._pending: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wants_channel = False
        self.connected = asyncio.Event()
        """Set once ICE and DTLS are up and, when the offer has a data channel, the events
        channel is open: until then the call is half-open."""

    async def answer(self, offer_sdp: str) -> str:
        """Apply the offer; return the answer SDP with its ICE candidates."""
        if "m=audio" not in offer_sdp:
            raise BadOffer("The offer has no audio media section (m=audio).")
        pc = self.pc
        self._wants_channel = "m=application" in offer_sdp

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._spawn(pump_inbound(track, self._on_audio))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            if channel.label != EVENTS_CHANNEL:
                return
            self.channel = channel
            channel.on("message", self._on_message)
            channel.on("open", self._on_open)
            self._on_open()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            log.info("peer connection %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self._on_ended(f"peer connection {pc.connectionState}")
            self._check_connected()

        @pc.on("iceconnectionstatechange")
        def on_ice_state() -> None:
            # "failed" also when consent expires (RFC 7675: no answer to checks for ~30 s).
            if pc.iceConnectionState in ("failed", "closed"):
                self._on_ended(f"ICE {pc.iceConnectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        except Exception as exc:  # aiortc raises ValueError and others on malformed SDP
            raise BadOffer(f"The offer SDP is not valid: {exc}") from None
        audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise BadOffer("The offer has no usable audio media section.")
        jitter.install(audio[0].receiver)
        audio[0].sender.replaceTrack(self.output)
        audio[0].direction = "sendrecv"
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    def _on_open(self) -> None:
        self.flush()
        self._check_connected()

    def _check_connected(self) -> None:
        channel_open = self.channel is not None and self.channel.readyState == "open"
        if self.pc.connectionState == "connected" and (channel_open or not self._wants_channel):
            self.connected.set()

    def send(self, text: str) -> None:
        """Queue one event (plain JSON text); sent as soon as the channel is open."""
        self._pending.append(text)
        self.flush()

    def flush(self) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        pending, self._pending = self._pending, []
        for text in pending:
            channel.send(text)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.output.stop()
        await self.pc.close()
