"""The durable database's schema, as numbered steps applied at start-up.

Each database records the versions it has applied in `schema_migrations`; at start-up every missing step runs, in
order, in one transaction together with its bookkeeping, so a crash leaves either the old schema or the new one.
Steps are additive (new tables, columns, indexes): during a rolling upgrade the previous release keeps working
against the newer schema. To add a table (for example a security activity log), append a `Migration` with the
next version and its SQL for both dialects; never edit a step that has shipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "telegrams",
        # IF NOT EXISTS: releases before the migration table created this table already; it is adopted as it is.
        sqlite=(
            "CREATE TABLE IF NOT EXISTS telegrams (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, recipient TEXT NOT NULL,"
            " message TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL, idempotency_key TEXT)",
            "CREATE INDEX IF NOT EXISTS telegrams_by_user ON telegrams (user_id, created_at DESC)",
            # The one place idempotency is decided: a second telegram with the same key cannot be inserted.
            "CREATE UNIQUE INDEX IF NOT EXISTS telegrams_idempotency ON telegrams (user_id, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL",
        ),
        postgresql=(
            # seq orders telegrams created within the same clock tick (SQLite uses its rowid for that).
            "CREATE TABLE telegrams (seq BIGINT GENERATED ALWAYS AS IDENTITY, id TEXT PRIMARY KEY,"
            " user_id TEXT NOT NULL, recipient TEXT NOT NULL, message TEXT NOT NULL,"
            " created_at DOUBLE PRECISION NOT NULL, status TEXT NOT NULL, idempotency_key TEXT)",
            "CREATE INDEX telegrams_by_user ON telegrams (user_id, created_at DESC, seq DESC)",
            "CREATE UNIQUE INDEX telegrams_idempotency ON telegrams (user_id, idempotency_key)"
            " WHERE idempotency_key IS NOT NULL",
        ),
    ),
)


def pending(applied: Iterable[int]) -> list[Migration]:
    """The steps not yet applied, in order. Versions this release does not know (a newer release ran) are left
    alone: steps are additive."""
    done = set(applied)
    return [migration for migration in MIGRATIONS if migration.version not in done]
