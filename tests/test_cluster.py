"""Several instances sharing one real Redis: keys, the call registry and the mint rate limit.

A throwaway ``redis-server`` on a loopback port; two real realtalk processes (A and B) with
the same standard key and ``REALTALK_REDIS_URL``, as behind a load balancer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from realtalk.app.server import create_app
from realtalk.config import Settings
from realtalk.core.config import SessionConfig
from realtalk.session.keys import KeyMinter, KeyRejected
from realtalk.session.redis_keys import RedisKeyStore
from tests.conftest import (
    LiveServer,
    RedisServer,
    free_port,
    start_redis,
    start_server,
    stop_redis,
    stop_server,
    with_settings,
)
from tests.rtc_client import RtcClient

pytestmark = pytest.mark.live

API_KEY = "rt_cluster_shared_key_0123456789abcdef"
MINT_LIMIT = 3


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    stop_redis(server)


@pytest.fixture(scope="module")
def pair(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, LiveServer]]:
    tmp = tmp_path_factory.mktemp("cluster")
    env = {
        "REALTALK_API_KEY": API_KEY,
        "REALTALK_REDIS_URL": redis_server.url,
        "REALTALK_MINT_RATE_LIMIT": f"{MINT_LIMIT}/minute",
    }
    a = start_server(tmp, "a", env)  # both load their models at once
    try:
        b = start_server(tmp, "b", env, ready=True)
    except BaseException:
        stop_server(a)
        raise
    try:
        deadline = time.monotonic() + 120
        while httpx.get(f"{a.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, a.log_text()
            time.sleep(0.1)
        yield a, b
    finally:
        stop_server(a)
        stop_server(b)


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def ws_url(server: LiveServer, query: str = "") -> str:
    return server.url.replace("http", "ws", 1) + "/v1/realtime" + query


async def mint(server: LiveServer, generation: str, **session: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        if generation == "beta":
            response = await http.post("/v1/realtime/sessions", headers=auth(), json=session)
        else:
            body = {"session": {"type": "realtime", **session}}
            response = await http.post("/v1/realtime/client_secrets", headers=auth(), json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def secret(minted: dict[str, Any]) -> str:
    value = minted["client_secret"]["value"] if "client_secret" in minted else minted["value"]
    return str(value)


async def open_session(server: LiveServer, key: str, beta: bool = False) -> dict[str, Any]:
    """Open a WebSocket session with ``key``: the ``session.created`` event, or the refusal
    as ``{"status": …, "body": …}``."""
    headers = {"Authorization": f"Bearer {key}"}
    if beta:
        headers["OpenAI-Beta"] = "realtime=v1"
    try:
        async with websockets.connect(ws_url(server), additional_headers=headers) as ws:
            created: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 20))
            return created
    except websockets.InvalidStatus as refusal:
        body = refusal.response.body.decode() if refusal.response.body else ""
        return {"status": refusal.response.status_code, "body": body}


# ---- the key store on its own ----------------------------------------------------------------
async def test_store_keeps_only_digests_and_expires_with_the_key(
    redis: Redis, redis_server: RedisServer
) -> None:
    minter = KeyMinter(RedisKeyStore(redis))
    config = SessionConfig(instructions="Only in the record.")
    value, record = await minter.mint(config, "ga", ttl_s=45)
    names = [name.decode() for name in await redis.keys("realtalk:ek:*")]
    assert names == [f"realtalk:ek:{record.digest.hex()}"]
    stored = await redis.get(names[0])
    assert value.encode() not in stored and value[3:].encode() not in stored
    assert 40 <= await redis.ttl(names[0]) <= 45
    assert (await minter.redeem(value)).config == config
    assert 40 <= await redis.ttl(f"realtalk:ek:uses:{record.digest.hex()}") <= 45

    beta_value, _ = await minter.mint(config, "beta")
    # Two instances (two clients, two minters) redeem one beta key at the same moment.
    other = Redis.from_url(redis_server.url)
    try:
        results = await asyncio.gather(
            minter.redeem(beta_value),
            KeyMinter(RedisKeyStore(other)).redeem(beta_value),
            return_exceptions=True,
        )
    finally:
        await other.aclose()
    refused = [r for r in results if isinstance(r, KeyRejected)]
    assert len(refused) == 1 and "already used" in refused[0].reason, results


# ---- two instances -------------------------------------------------------------------------
@pytest.mark.models
async def test_key_minted_on_one_instance_opens_a_session_on_the_other(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    minted = await mint(a, "ga", instructions="Minted on A.")
    created = await open_session(b, secret(minted))
    assert created.get("type") == "session.created", created
    assert created["session"]["id"] == minted["session"]["id"]
    assert created["session"]["instructions"] == "Minted on A."


@pytest.mark.models
async def test_a_beta_key_raced_on_both_instances_opens_one_session(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    for _ in range(3):
        key = secret(await mint(a, "beta"))
        results = await asyncio.gather(open_session(a, key, True), open_session(b, key, True))
        opened = [r for r in results if r.get("type") == "session.created"]
        refused = [r for r in results if r.get("status") == 401]
        assert len(opened) == 1 and len(refused) == 1, results
        assert "already used" in refused[0]["body"]


@pytest.mark.models
async def test_a_ga_key_counts_its_uses_across_instances(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    minted = await mint(a, "ga")
    key, first_id = secret(minted), minted["session"]["id"]
    raced = await asyncio.gather(open_session(a, key), open_session(b, key))
    later = await open_session(b, key)
    ids = [r["session"]["id"] for r in [*raced, later]]
    assert ids.count(first_id) == 1, ids  # the minted id goes to exactly one session
    assert len(set(ids)) == 3


@pytest.mark.models
async def test_hangup_and_sideband_reach_a_call_held_by_the_other_instance(
    pair: tuple[LiveServer, LiveServer], redis: Redis
) -> None:
    a, b = pair
    client = RtcClient()
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{a.url}/v1/realtime/calls",
            content=await client.offer(),
            headers={
                "Authorization": f"Bearer {secret(await mint(a, 'ga'))}",
                "Content-Type": "application/sdp",
            },
        )
        assert response.status_code == 201, response.text
        call_id = response.headers["Location"].rsplit("/", 1)[-1]
        try:
            await client.accept(response.text)
            await client.until("session.created")
            assert await redis.get(f"realtalk:call:{call_id}") is not None
            async with websockets.connect(
                ws_url(b, f"?call_id={call_id}"), additional_headers=auth()
            ) as side:
                # A client event sent on B reaches the session on A; its answer comes back.
                await side.send(
                    json.dumps(
                        {
                            "type": "session.update",
                            "event_id": "evt_from_b",
                            "session": {"type": "realtime", "instructions": "Set through B."},
                        }
                    )
                )
                updated = json.loads(await asyncio.wait_for(side.recv(), 10))
                assert updated["type"] == "session.updated", updated
                assert updated["session"]["instructions"] == "Set through B."
                on_channel = (await client.until("session.updated", 10))[-1]
                assert on_channel["event_id"] == updated["event_id"]
                # An event the call's own client causes on A is seen on B.
                client.send(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": "Typed on the page."}],
                        },
                    }
                )
                seen = json.loads(await asyncio.wait_for(side.recv(), 10))
                assert seen["type"] == "conversation.item.added", seen
                assert seen["item"]["content"][0]["text"] == "Typed on the page."

                hung = await http.post(
                    f"{b.url}/v1/realtime/calls/{call_id}/hangup", headers=auth()
                )
                assert hung.status_code == 200, hung.text
                with pytest.raises(websockets.ConnectionClosed):
                    while True:  # the sideband on B ends with the call on A
                        await asyncio.wait_for(side.recv(), 10)
            for _ in range(100):
                if (await http.get(f"{a.url}/healthz")).json()["sessions"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get(f"{a.url}/healthz")).json()["sessions"] == 0
            assert await redis.get(f"realtalk:call:{call_id}") is None
            again = await http.post(f"{b.url}/v1/realtime/calls/{call_id}/hangup", headers=auth())
            assert again.status_code == 404
            assert again.json()["error"]["code"] == "call_not_found"
        finally:
            await http.post(f"{a.url}/v1/realtime/calls/{call_id}/hangup", headers=auth())
            await client.close()
    for query, status in ((f"?call_id={call_id}", 404), ("?call_id=rtc_missing", 404)):
        with pytest.raises(websockets.InvalidStatus) as refusal:
            async with websockets.connect(ws_url(b, query), additional_headers=auth()):
                pass
        assert refusal.value.response.status_code == status


@pytest.mark.models
async def test_the_mint_rate_limit_counts_across_instances(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    a, b = pair
    async with httpx.AsyncClient(timeout=30) as http:
        statuses = [
            (await http.post(f"{server.url}/api/realtime/session")).status_code
            for server in (a, b, a)
        ]
        assert statuses == [200] * MINT_LIMIT
        refused = await http.post(f"{b.url}/api/realtime/session")
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1


async def test_an_unreachable_redis_is_a_clear_503(settings: Settings) -> None:
    app = create_app(with_settings(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path in ("/v1/realtime/client_secrets", "/api/realtime/session"):
            response = await http.post(path, headers=auth_for(settings), json={})
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "shared_state_unavailable"
            assert error["type"] == "server_error"
        assert (await http.get("/healthz")).status_code in (200, 503)  # still serving


def auth_for(settings: Settings) -> dict[str, str]:
    assert settings.api_key is not None
    return {"Authorization": f"Bearer {settings.api_key.get_secret_value()}"}
