"""A WebRTC client process that connects a call and then stops, as a crashed browser would.

Run as ``python -m tests.rtc_vanishing_client <base url> <ephemeral key>``: prints ``connected``
once the events channel is open, then waits to be killed (no hangup, no close, no DTLS alert).
"""

from __future__ import annotations

import asyncio
import sys

import httpx

from tests.rtc_client import RtcClient


async def main(url: str, key: str) -> None:
    client = RtcClient()
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post(
            "/v1/realtime/calls",
            content=await client.offer(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/sdp"},
        )
        response.raise_for_status()
    await client.accept(response.text)
    await client.until("session.created", limit_s=30)
    print("connected", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
