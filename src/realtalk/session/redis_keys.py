"""Ephemeral keys in Redis, so that a key minted on one instance opens sessions on any other.

Redis holds, per key, only what :class:`~realtalk.session.keys.EphemeralKey` holds (the
SHA-256 digest names the entry; the key itself is never stored), and it expires with the
key. The use rules hold however many instances race on one key, because each is one atomic
Redis operation:

- a beta key is taken with one script that reads, deletes and marks it used (two instances
  redeeming it at once: exactly one gets it; the other is told it was already used);
- a GA key's uses are counted with ``INCR`` (exactly one session gets the count 1, and with
  it the session id the minting showed).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, TypeAdapter
from redis.asyncio import Redis

from realtalk.core.config import SessionConfig
from realtalk.session.keys import Clock, EphemeralKey, Generation

PREFIX = "realtalk:ek:"

# KEYS: record, used marker. Take the record and leave a marker for its remaining lifetime.
_TAKE = """
local ttl = redis.call('PTTL', KEYS[1])
local record = redis.call('GETDEL', KEYS[1])
if record and ttl > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', ttl)
end
return record
"""

# KEYS: use counter, record. Count one use; the counter lives as long as the key does.
_COUNT = """
local uses = redis.call('INCR', KEYS[1])
if uses == 1 then
  local ttl = redis.call('PTTL', KEYS[2])
  if ttl < 1 then ttl = 60000 end
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return uses
"""

_CONFIG = TypeAdapter(SessionConfig)


class _StoredKey(BaseModel):
    """The JSON a record is kept as (the digest is the entry's name, not part of it)."""

    session_id: str
    generation: Generation
    config: dict[str, Any]
    created_at: int
    expires_at: int


class RedisKeyStore:
    """An :class:`~realtalk.session.keys.EphemeralKeyStore` shared by every instance that
    uses the same Redis."""

    def __init__(self, redis: Redis, clock: Clock = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._take = redis.register_script(_TAKE)
        self._count = redis.register_script(_COUNT)

    async def add(self, record: EphemeralKey) -> None:
        stored = _StoredKey(
            session_id=record.session_id,
            generation=record.generation,
            config=_CONFIG.dump_python(record.config, mode="json"),
            created_at=record.created_at,
            expires_at=record.expires_at,
        )
        ttl_ms = max(1, int((record.expires_at - self._clock()) * 1000))
        await self._redis.set(_name(record.digest), stored.model_dump_json(), px=ttl_ms)

    async def get(self, digest: bytes) -> EphemeralKey | None:
        return _record(digest, await self._redis.get(_name(digest)))

    async def take(self, digest: bytes) -> EphemeralKey | None:
        raw = await self._take(keys=[_name(digest), _name(digest, "used")])
        return _record(digest, raw)

    async def count_use(self, digest: bytes) -> int:
        return int(await self._count(keys=[_name(digest, "uses"), _name(digest)]))

    async def was_used(self, digest: bytes) -> bool:
        return bool(await self._redis.exists(_name(digest, "used")))


def _name(digest: bytes, kind: str = "") -> str:
    return PREFIX + (f"{kind}:" if kind else "") + digest.hex()


def _record(digest: bytes, raw: bytes | str | None) -> EphemeralKey | None:
    if raw is None:
        return None
    stored = _StoredKey.model_validate_json(raw)
    return EphemeralKey(
        digest=digest,
        session_id=stored.session_id,
        generation=stored.generation,
        config=_CONFIG.validate_python(stored.config),
        created_at=stored.created_at,
        expires_at=stored.expires_at,
    )
