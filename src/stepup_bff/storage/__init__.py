"""Server-side state: sessions, step-up challenges, attempt counters, telegrams.

The `Store` protocol is small on purpose: a key/value map with expiry and the few atomic operations the callers
need (insert-if-absent, update-if-present, get-and-delete, increment-with-expiry), which map one-to-one onto
Redis commands (SET NX, SET XX, GETDEL, INCR + EXPIRE). `open_store(url)` picks the implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from ..clock import Clock
from .base import Store, Telegram, TelegramStore
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..ops.metrics import StoreBackend

__all__ = ["SqliteStore", "Store", "Telegram", "TelegramStore", "open_store"]


@asynccontextmanager
async def open_store(
    url: str, clock: Clock, *, on_error: Callable[[StoreBackend, str], None] | None = None
) -> AsyncIterator[SqliteStore]:
    """`on_error` is told the backend and the operation whenever the backend fails one (the app counts them)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"unsupported storage url scheme: {url.split(':', 1)[0]}")
    store = SqliteStore(url.removeprefix("sqlite:///"), clock, on_error=on_error)
    try:
        yield store
    finally:
        await store.close()
