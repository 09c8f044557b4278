"""PostgreSQL database: telegrams and the activity log shared by every replica (database.url = postgresql://...).

psycopg 3 with its async pool (psycopg-pool), one pool per process owned by the app's lifespan. Why psycopg rather
than asyncpg: it is typed (mypy strict needs no stubs), it works behind pgbouncer's transaction pooling without
turning off a statement cache, it takes libpq's URLs and options (sslmode, target_session_attrs) as operators know
them, and its pool is maintained by the same authors.

- The schema is migrated at start-up on one connection, in one transaction, under an advisory lock, so replicas
  starting together never run the same step twice (storage/migrations.py).
- Idempotency is the unique index's: `INSERT ... ON CONFLICT DO NOTHING`, then read the original. Of two replicas
  inserting the same key at once, PostgreSQL makes the second wait for the first's commit and then do nothing.
- Each telegram is committed (synchronous_commit, PostgreSQL's default) before the method returns, so before 201.
- Every connection is checked when it leaves the pool, so a restarted server costs no request a failure; errors of
  the database (not of our SQL) become `DatabaseUnavailable` (503), and the pool reconnects by itself.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from ..errors import DatabaseUnavailable
from ..settings import DatabaseSettings
from . import migrations
from .base import GENESIS, ActivityEvent, ErrorHook, EventBuilder, StorageConfigError, Telegram, as_row, hide_password

logger = logging.getLogger(__name__)

Connection = psycopg.AsyncConnection[TupleRow]

# Errors in our own SQL or data: bugs (a 500 and a traceback), not an unavailable database.
_BUGS = (psycopg.ProgrammingError, psycopg.IntegrityError, psycopg.DataError)
# Any bigint will do as long as every release uses the same one: it names "migrating stepup-bff's schema".
_MIGRATION_LOCK = int.from_bytes(b"stepupdb", "big") >> 1
_COLUMNS = "id, user_id, recipient, message, created_at, status"
_ACTIVITY_COLUMNS = "user_id, seq, at_ms, kind, outcome, detail, address, agent, prev_hash, hash"
# Appends of one user's events that lose the race for the next seq try again on the new head, this many times in all.
APPEND_ATTEMPTS = 20


def describe(url: str) -> str:
    """host:port/dbname of a libpq URL, without user or password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(unparsable URL)"
    return f"{parts.get('host') or 'localhost'}:{parts.get('port') or 5432}/{parts.get('dbname') or ''}"


class PostgresDatabase:
    def __init__(self, pool: AsyncConnectionPool[Connection], *, on_error: ErrorHook | None = None) -> None:
        self._pool = pool
        self._on_error = on_error

    @classmethod
    async def open(cls, settings: DatabaseSettings, *, on_error: ErrorHook | None = None) -> PostgresDatabase:
        """Connect, migrate and fill the pool; a clear `StorageConfigError` naming database.url if any of it fails."""
        connect_timeout = max(2, math.ceil(settings.connect_timeout))  # libpq counts whole seconds, at least 2
        try:
            async with await psycopg.AsyncConnection.connect(settings.url, connect_timeout=connect_timeout) as conn:
                await _migrate(conn)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # Both the parsed parts and libpq's text may carry a piece of a password that was not percent-encoded.
            message = f"database.url: cannot use PostgreSQL at {describe(settings.url)}: {reason}"
            raise StorageConfigError(hide_password(message, settings.url)) from None
        statement_timeout = f"{math.ceil(settings.timeout * 1000)}ms"

        async def configure(conn: Connection) -> None:
            # A statement that hangs (a lock, a dying server) ends with an error instead of holding the request.
            await conn.execute("SELECT set_config('statement_timeout', %s, false)", (statement_timeout,))
            await conn.commit()

        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            settings.url,
            min_size=1,
            max_size=settings.pool_size,
            timeout=settings.timeout,  # how long a request waits for a connection before it is a 503
            kwargs={"connect_timeout": connect_timeout},
            configure=configure,
            check=AsyncConnectionPool.check_connection,
            # While the server is away the pool retries in the background with a growing delay (1 s, 2 s, 4 s...),
            # so it could be that long after the server is back before it tries again. Giving up soon lets the
            # next request start a fresh attempt at once: recovery within this many seconds of the server's return.
            reconnect_timeout=settings.connect_timeout + settings.timeout,
            open=False,
            name="stepup-bff",
        )
        try:
            await pool.open(wait=True, timeout=settings.connect_timeout + settings.timeout)
        except psycopg.Error as exc:
            await pool.close()
            message = f"database.url: cannot use PostgreSQL at {describe(settings.url)}: {exc}"
            raise StorageConfigError(hide_password(message, settings.url)) from None
        return cls(pool, on_error=on_error)

    @asynccontextmanager
    async def _transaction(self, name: str) -> AsyncIterator[Connection]:
        try:
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
        except _BUGS:
            raise
        except psycopg.Error as exc:
            logger.warning("database unavailable: %s: %s", type(exc).__name__, str(exc).strip().splitlines()[:1])
            if self._on_error is not None:
                self._on_error("postgresql", name)
            raise DatabaseUnavailable() from exc

    async def create_telegram(
        self, telegram: Telegram, idempotency_key: str | None, *, activity: EventBuilder | None = None
    ) -> tuple[Telegram, bool]:
        for _ in range(APPEND_ATTEMPTS):
            appending = False
            try:
                async with self._transaction("create_telegram") as conn:
                    result = await self._insert(conn, telegram, idempotency_key)
                    if result[1] and activity is not None:
                        # In the telegram's own transaction: if the event cannot be written, neither is the telegram.
                        appending = True
                        await self._append(conn, telegram.user_id, activity)
                # Leaving the transaction block committed it: only now may the caller answer 201.
                return result
            except psycopg.errors.UniqueViolation:
                if not appending:
                    raise  # the telegram's own insert: a bug, not a race
                # The event's seq was taken meanwhile (see append_activity): the whole transaction was rolled back,
                # telegram and all; try both again on the new head.
                continue
        if self._on_error is not None:
            self._on_error("postgresql", "create_telegram")
        raise DatabaseUnavailable("Too many concurrent activity events for one user; try again.")

    @staticmethod
    async def _insert(conn: Connection, telegram: Telegram, idempotency_key: str | None) -> tuple[Telegram, bool]:
        inserted = await conn.execute(
            "INSERT INTO telegrams (id, user_id, recipient, message, created_at, status, idempotency_key) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING id",
            (*as_row(telegram), idempotency_key),  # the columns in the dataclass's order
        )
        if await inserted.fetchone() is not None:
            return telegram, True
        # The key's first telegram, committed by whichever request (on whichever replica) won the insert.
        found = await conn.execute(
            f"SELECT {_COLUMNS} FROM telegrams WHERE user_id = %s AND idempotency_key = %s",  # noqa: S608
            (telegram.user_id, idempotency_key),
        )
        row = await found.fetchone()
        assert row is not None  # noqa: S101 - the conflict means the row exists and is committed
        return Telegram(*row), False

    async def list_telegrams(self, user_id: str, limit: int) -> list[Telegram]:
        async with self._transaction("list_telegrams") as conn:
            rows = await conn.execute(
                f"SELECT {_COLUMNS} FROM telegrams WHERE user_id = %s "  # noqa: S608 - a constant column list
                "ORDER BY created_at DESC, seq DESC LIMIT %s",
                (user_id, limit),
            )
            return [Telegram(*row) for row in await rows.fetchall()]

    async def find_telegram(self, user_id: str, idempotency_key: str) -> Telegram | None:
        async with self._transaction("find_telegram") as conn:
            found = await conn.execute(
                f"SELECT {_COLUMNS} FROM telegrams WHERE user_id = %s AND idempotency_key = %s",  # noqa: S608
                (user_id, idempotency_key),
            )
            row = await found.fetchone()
            return Telegram(*row) if row is not None else None

    # -- the activity log --------------------------------------------------------------------------------------------

    async def append_activity(self, user_id: str, build: EventBuilder) -> ActivityEvent:
        for _ in range(APPEND_ATTEMPTS):
            try:
                async with self._transaction("append_activity") as conn:
                    return await self._append(conn, user_id, build)
            except psycopg.errors.UniqueViolation:
                # Another append (another request, another replica) took this seq between our read and our insert:
                # PostgreSQL made us wait for its commit, then refused ours. Build again on the new head; the chain
                # never forks.
                continue
        if self._on_error is not None:
            self._on_error("postgresql", "append_activity")
        raise DatabaseUnavailable("Too many concurrent activity events for one user; try again.")

    @staticmethod
    async def _append(conn: Connection, user_id: str, build: EventBuilder) -> ActivityEvent:
        head = await (
            await conn.execute(
                "SELECT seq, hash FROM activity_events WHERE user_id = %s ORDER BY seq DESC LIMIT 1", (user_id,)
            )
        ).fetchone()
        event = build(1, GENESIS) if head is None else build(int(head[0]) + 1, str(head[1]))
        await conn.execute(
            f"INSERT INTO activity_events ({_ACTIVITY_COLUMNS}) "  # noqa: S608 - a constant column list
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            as_row(event),
        )
        return event

    async def list_activity(self, user_id: str, before_seq: int | None, limit: int) -> list[ActivityEvent]:
        async with self._transaction("list_activity") as conn:
            rows = await conn.execute(
                f"SELECT {_ACTIVITY_COLUMNS} FROM activity_events WHERE user_id = %s AND seq < %s "  # noqa: S608
                "ORDER BY seq DESC LIMIT %s",
                (user_id, before_seq if before_seq is not None else 2**62, limit),
            )
            return [ActivityEvent(*row) for row in await rows.fetchall()]

    async def activity_chains(self) -> AsyncIterator[list[ActivityEvent]]:
        async with self._transaction("activity_chains") as conn:
            users = [
                row[0]
                for row in await (
                    await conn.execute("SELECT DISTINCT user_id FROM activity_events ORDER BY user_id")
                ).fetchall()
            ]
        for user_id in users:
            async with self._transaction("activity_chains") as conn:
                rows = await conn.execute(
                    f"SELECT {_ACTIVITY_COLUMNS} FROM activity_events WHERE user_id = %s ORDER BY seq",  # noqa: S608
                    (user_id,),
                )
                chain = [ActivityEvent(*row) for row in await rows.fetchall()]
            yield chain

    async def ping(self) -> None:
        async with self._transaction("ping") as conn:
            await conn.execute("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()


async def _migrate(conn: Connection) -> None:
    async with conn.transaction():
        # Replicas starting at once queue here; the first applies the steps, the others find them applied.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(migrations.SCHEMA_TABLE)
        applied = [row[0] for row in await (await conn.execute("SELECT version FROM schema_migrations")).fetchall()]
        for migration in migrations.pending(applied):
            for statement in migration.postgresql:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, time.time()),
            )
            logger.info("database migrated to version %d (%s)", migration.version, migration.name)
