"""The durable database's schema, as numbered steps applied at start-up.

Each database records the versions it has applied in `schema_migrations`; at start-up every missing step runs, in
order, in one transaction together with its bookkeeping, so a crash leaves either the old schema or the new one.
Steps are additive (new tables, columns, indexes): during a rolling upgrade the previous release keeps working
against the newer schema. To add a table (for example a security activity log), append a `Migration` with the
next version and its SQL for both dialects; never edit a step that has shipped. Version 2 is the security activity
log.
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
    Migration(
        2,
        "activity_events",
        # The security activity log (activity/). The primary key (user_id, seq) is what keeps a user's hash chain from
        # forking: of two appends that read the same head, only one can insert the next seq. The triggers make the
        # table append-only for the application (an operator who must delete, say for retention, drops them first,
        # and `stepup-bff audit verify` then shows which chains lost events).
        sqlite=(
            "CREATE TABLE activity_events (user_id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL,"
            " kind TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, address TEXT, agent TEXT,"
            " prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (user_id, seq)) WITHOUT ROWID",
            "CREATE TRIGGER activity_events_no_update BEFORE UPDATE ON activity_events"
            " BEGIN SELECT RAISE(ABORT, 'activity_events is append-only'); END",
            "CREATE TRIGGER activity_events_no_delete BEFORE DELETE ON activity_events"
            " BEGIN SELECT RAISE(ABORT, 'activity_events is append-only'); END",
        ),
        postgresql=(
            "CREATE TABLE activity_events (user_id TEXT NOT NULL, seq BIGINT NOT NULL, at_ms BIGINT NOT NULL,"
            " kind TEXT NOT NULL, outcome TEXT NOT NULL, detail TEXT NOT NULL, address TEXT, agent TEXT,"
            " prev_hash TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (user_id, seq))",
            "CREATE FUNCTION activity_events_append_only() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'activity_events is append-only'; END $$",
            "CREATE TRIGGER activity_events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON activity_events"
            " FOR EACH STATEMENT EXECUTE FUNCTION activity_events_append_only()",
        ),
    ),
)


def pending(applied: Iterable[int]) -> list[Migration]:
    """The steps not yet applied, in order. Versions this release does not know (a newer release ran) are left
    alone: steps are additive."""
    done = set(applied)
    return [migration for migration in MIGRATIONS if migration.version not in done]
