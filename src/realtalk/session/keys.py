"""Ephemeral keys: short-lived credentials bound to a session configuration.

As on OpenAI: a GA key (``client_secrets``) opens sessions until it expires, each a new
session with the key's configuration; a beta key (``POST /v1/realtime/sessions``) stands for
the one session that call created, and opens it once.

Keys are random (256 bits), prefixed ``ek_``, and stored only as a SHA-256 digest; a lookup
compares digests in constant time. The store is an interface so a shared store (Redis) can
replace the in-memory one when the engine runs on several machines.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from realtalk.core.config import SessionConfig

Clock = Callable[[], float]
Generation = Literal["beta", "ga"]

KEY_PREFIX = "ek_"
BETA_TTL_S = 60
GA_TTL_S = 600
MIN_TTL_S = 10
MAX_TTL_S = 7200


@dataclass(frozen=True, slots=True)
class EphemeralKey:
    """What the store keeps for one key: never the key itself."""

    digest: bytes
    session_id: str
    generation: Generation
    config: SessionConfig
    created_at: int
    expires_at: int


class KeyRejected(Exception):
    """The key cannot open a session; ``reason`` says why in words a developer can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EphemeralKeyStore(Protocol):
    """Where minted keys live until they are redeemed or expire."""

    async def add(self, record: EphemeralKey) -> None: ...

    async def get(self, digest: bytes) -> EphemeralKey | None: ...

    async def take(self, digest: bytes) -> EphemeralKey | None:
        """Remove and return the record (single use), or ``None`` when there is none."""
        ...

    async def count_use(self, digest: bytes) -> int:
        """Count one more session opened with a (reusable) key; return the count so far."""
        ...

    async def was_used(self, digest: bytes) -> bool:
        """Was this key redeemed already (and not yet expired)? For a clearer refusal."""
        ...


class InMemoryKeyStore:
    """A process-local store; expired records are swept as new ones arrive."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._records: dict[bytes, EphemeralKey] = {}
        self._used: dict[bytes, int] = {}
        self._uses: dict[bytes, int] = {}
        self._clock = clock
        self._lock = asyncio.Lock()

    def __len__(self) -> int:
        return len(self._records)

    async def add(self, record: EphemeralKey) -> None:
        async with self._lock:
            self._sweep()
            self._records[record.digest] = record

    async def get(self, digest: bytes) -> EphemeralKey | None:
        record = self._records.get(digest)
        if record is None or not hmac.compare_digest(record.digest, digest):
            return None
        return record

    async def take(self, digest: bytes) -> EphemeralKey | None:
        async with self._lock:
            record = await self.get(digest)
            if record is not None:
                del self._records[record.digest]
                self._used[record.digest] = record.expires_at
            return record

    async def count_use(self, digest: bytes) -> int:
        self._uses[digest] = self._uses.get(digest, 0) + 1
        return self._uses[digest]

    async def was_used(self, digest: bytes) -> bool:
        return digest in self._used

    def _sweep(self) -> None:
        now = self._clock()
        for digest in [d for d, r in self._records.items() if r.expires_at <= now]:
            del self._records[digest]
            self._uses.pop(digest, None)
        for digest in [d for d, exp in self._used.items() if exp <= now]:
            del self._used[digest]


def digest_of(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


class KeyMinter:
    """Mints and redeems ephemeral keys against a store, with an injectable clock."""

    def __init__(self, store: EphemeralKeyStore, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock

    async def mint(
        self, config: SessionConfig, generation: Generation, ttl_s: int | None = None
    ) -> tuple[str, EphemeralKey]:
        """Return the key's value (shown once, to the caller) and its stored record."""
        ttl = ttl_s if ttl_s is not None else (BETA_TTL_S if generation == "beta" else GA_TTL_S)
        if not MIN_TTL_S <= ttl <= MAX_TTL_S:
            raise ValueError(f"ttl must be between {MIN_TTL_S} and {MAX_TTL_S} seconds")
        value = KEY_PREFIX + secrets.token_urlsafe(32)
        now = int(self.clock())
        record = EphemeralKey(
            digest=digest_of(value),
            session_id="sess_" + secrets.token_hex(12),
            generation=generation,
            config=config,
            created_at=now,
            expires_at=now + ttl,
        )
        await self.store.add(record)
        return value, record

    async def _check(self, value: str, *, consume: bool) -> EphemeralKey:
        if not value.startswith(KEY_PREFIX):
            raise KeyRejected("Not an ephemeral key (expected a value starting with 'ek_').")
        digest = digest_of(value)
        record = await (self.store.take(digest) if consume else self.store.get(digest))
        if record is None:
            used = await self.store.was_used(digest)
            raise KeyRejected(
                "This ephemeral key was already used to open a session; mint a new one."
                if used
                else "Unknown ephemeral key; mint a new one."
            )
        if record.expires_at <= self.clock():
            raise KeyRejected("This ephemeral key has expired; mint a new one.")
        return record

    async def peek(self, value: str) -> EphemeralKey:
        """Check a key without using it up (raises :class:`KeyRejected`)."""
        return await self._check(value, consume=False)

    async def redeem(self, value: str) -> EphemeralKey:
        """Use a key to open a session (raises :class:`KeyRejected`). A beta key is used up;
        a GA key opens sessions until it expires, the first with the session id its minting
        showed, each later one with a new id."""
        record = await self._check(value, consume=False)
        if record.generation == "beta":
            return await self._check(value, consume=True)
        if await self.store.count_use(record.digest) == 1:
            return record
        return replace(record, session_id="sess_" + secrets.token_hex(12))
