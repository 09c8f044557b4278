"""The storage interface. Values are strings (callers store JSON); every key may expire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Store(Protocol):
    async def get(self, key: str) -> str | None:
        """The live value, or None if absent or expired."""
        ...

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store `value` for `ttl` seconds, replacing any previous value."""
        ...

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Insert only if absent (or expired); True if this call inserted. Redis: SET NX EX."""
        ...

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        """Update only if present (and live); True if updated. Redis: SET XX EX. Never re-creates a deleted key."""
        ...

    async def pop(self, key: str) -> str | None:
        """Get and delete in one step, so of two concurrent callers only one gets the value. Redis: GETDEL."""
        ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Add one and return the new count; the first increment starts a `ttl`-second window (fixed window)."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires, or None if absent."""
        ...

    async def ping(self) -> None:
        """Return if the store can serve reads and writes now; raise otherwise. Readiness (GET /readyz) calls it."""
        ...


@dataclass(frozen=True)
class Telegram:
    id: str
    user_id: str
    recipient: str
    message: str
    created_at: float
    status: str = "queued"


class TelegramStore(Protocol):
    async def create_telegram(self, telegram: Telegram, idempotency_key: str | None) -> tuple[Telegram, bool]:
        """Store durably; with an idempotency key already used by this user, return the original and False."""
        ...

    async def list_telegrams(self, user_id: str, limit: int) -> list[Telegram]:
        """The user's telegrams, newest first."""
        ...
