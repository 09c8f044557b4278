"""Server-side state and durable records.

Two kinds of data, two settings: `storage.url` holds short-lived state (sessions, sign-ins in progress,
challenges, counters, locks, grants) behind the small `Store` protocol: a key/value map with expiry and the few
atomic operations the callers need (insert-if-absent, update-if-present, get-and-delete, increment-with-expiry),
one Redis command each. `database.url` holds what must never be lost (telegrams, the security activity log)
behind `Database` (`TelegramStore` and `ActivityStore`). SQLite
serves both on one machine; Redis and PostgreSQL let several machines share them. `open_store` and
`open_database` pick the implementation from the URL's scheme and are used by the app's lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..settings import DatabaseSettings, Settings, StorageSettings
from .base import (
    GENESIS,
    ActivityEvent,
    ActivityStore,
    Database,
    ErrorHook,
    EventBuilder,
    StorageConfigError,
    Store,
    Telegram,
    TelegramStore,
    user_key,
)
from .sqlite import SqliteDatabase, SqliteStore

if TYPE_CHECKING:
    from .postgres import PostgresDatabase
    from .redis import RedisStore


def __getattr__(name: str) -> Any:
    # redis-py and psycopg (with libpq) are imported only by a process configured to use them: a worker on SQLite
    # would carry some 15 MiB of them for nothing.
    if name == "PostgresDatabase":
        from .postgres import PostgresDatabase

        return PostgresDatabase
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "GENESIS",
    "ActivityEvent",
    "ActivityStore",
    "Database",
    "EventBuilder",
    "PostgresDatabase",
    "RedisStore",
    "SqliteDatabase",
    "SqliteStore",
    "StorageConfigError",
    "Store",
    "Telegram",
    "TelegramStore",
    "ErrorHook",
    "check_backends",
    "open_database",
    "open_store",
    "user_key",
]


@asynccontextmanager
async def open_store(
    settings: StorageSettings, clock: Clock, *, on_error: ErrorHook | None = None
) -> AsyncIterator[Store]:
    """The store named by storage.url, connected and checked; closed on exit. `StorageConfigError` if unusable.
    `on_error` is told the backend and the operation whenever the backend fails one (the app counts them)."""
    store: SqliteStore | RedisStore
    if settings.url.startswith("sqlite:///"):
        store = SqliteStore(settings.url.removeprefix("sqlite:///"), clock, prefix=settings.prefix, on_error=on_error)
    else:  # redis://, rediss://, unix:// (settings.StorageSettings admits no other scheme)
        from .redis import RedisStore

        store = RedisStore.from_settings(settings, on_error=on_error)
        await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def open_database(settings: DatabaseSettings, *, on_error: ErrorHook | None = None) -> AsyncIterator[Database]:
    """The database named by database.url, migrated and checked; closed on exit. `StorageConfigError` if unusable."""
    database: SqliteDatabase | PostgresDatabase
    if settings.url.startswith("sqlite:///"):
        database = SqliteDatabase(settings.url.removeprefix("sqlite:///"), on_error=on_error)
    else:  # postgresql:// or postgres://
        from .postgres import PostgresDatabase

        database = await PostgresDatabase.open(settings, on_error=on_error)
    try:
        yield database
    finally:
        await database.close()


async def check_backends(settings: Settings, clock: Clock) -> None:
    """Open the store and the database once and close them again: `serve` does this before it starts any worker,
    so a wrong URL or a server that refuses is one clear `StorageConfigError` (exit 2), not a worker's traceback.
    The database is migrated here too, once, before the workers start."""
    async with open_store(settings.storage, clock), open_database(settings.database):
        pass
