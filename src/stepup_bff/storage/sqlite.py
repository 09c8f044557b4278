"""SQLite: the embedded default for the store and the database, safe for several worker processes on one machine.

WAL mode lets readers run alongside the single writer; every write runs in a `BEGIN IMMEDIATE` transaction, which
takes the database's write lock up front, so two processes can never both see "absent" or both read the same
counter. Writes run in a worker thread, so waiting for another process's write lock never stalls the event loop,
and they wait for it in short steps (`begin_immediate`), not SQLite's ever longer sleeps. Plain reads (`get`,
`ttl`, `list_telegrams`; every authenticated request does one) run inline on their own read-only connection: a WAL
reader never waits for a writer, and an indexed lookup takes microseconds, far less than the hop to a worker thread
and back (measured with wrk on one worker: GET /api/session 516 -> 601 requests/s, GET /api/telegrams 350 -> 450).

The store (`SqliteStore`, a key/value table) and the database (`SqliteDatabase`, telegrams) may share one file,
which is the default: each opens its own connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from ..clock import Clock
from ..errors import DatabaseUnavailable, StoreUnavailable
from . import migrations
from .base import GENESIS, ActivityEvent, ErrorHook, EventBuilder, StorageConfigError, Telegram, as_row

T = TypeVar("T")

_KV_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at);
-- The bounded indexes (storage/base.py): every row of one key shares its expiry, so an index expires whole.
CREATE TABLE IF NOT EXISTS kv_index (
    key TEXT NOT NULL,
    member TEXT NOT NULL,
    value TEXT NOT NULL,
    rank REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, member)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_index_expires_at ON kv_index (expires_at);
"""


# How long a write waits for another connection's write lock before the store or database counts as unavailable,
# and how long a readiness ping waits (well inside a probe's timeout).
WRITE_LOCK_WAIT = 5.0
PING_LOCK_WAIT = 1.0
# SQLite's own busy handler, for everything but taking the write lock (which `begin_immediate` waits for itself).
BUSY_TIMEOUT_MS = 5000
# The pauses between tries for the write lock: 50 µs, doubling up to 1 ms; 5 ms once the wait passes 50 ms (a lock
# held that long is a backup tool or a stuck process, not a neighbour's commit, and polling it at 1 ms costs CPU).
FIRST_PAUSE = 50e-6
LAST_PAUSE = 1e-3
LONG_WAIT = 0.05
LONG_PAUSE = 5e-3


def begin_immediate(
    db: sqlite3.Connection,
    wait: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """BEGIN IMMEDIATE: take the file's write lock, waiting up to `wait` seconds for whoever holds it.

    SQLite's busy handler waits by sleeping 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50 and then 100 ms between tries. Two
    workers on one file take turns at the lock a millisecond or two at a time (each group commit), and a writer that
    keeps waking while the other holds it sleeps ever longer: 100-350 ms for a telegram, measured with two workers.
    Here the busy handler is off for the BEGIN and the pauses are short (50 µs, doubling to 1 ms), so the lock is
    taken within about a millisecond of its release, at the cost of a few cheap tries."""
    db.execute("PRAGMA busy_timeout = 0")  # SQLITE_BUSY at once: the waiting is done here
    try:
        started = clock()
        deadline = started + wait
        pause = FIRST_PAUSE
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as exc:
                # Only "the lock is taken" is worth waiting for; any other error is the caller's at once.
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY  # SQLITE_BUSY_* too
                if not busy or clock() + pause > deadline:
                    raise
            sleep(pause)
            pause = LONG_PAUSE if clock() - started > LONG_WAIT else min(pause * 2, LAST_PAUSE)
    finally:
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except BaseException:
            # Never hand on a transaction the caller does not know it has, nor a connection that never waits.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


# Errors in our own SQL, not in the database: they stay bugs (a 500 and a traceback), not "unavailable".
_BUGS = (sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.InterfaceError)


class _SqliteFile:
    """One SQLite file: a writer connection used from worker threads (one at a time) and the event loop's own
    read-only connection. Every sqlite3 error becomes `unavailable` (fail closed; the next call tries again)."""

    def __init__(
        self, path: str | Path, *, setting: str, unavailable: type[StoreUnavailable], on_error: ErrorHook | None
    ) -> None:
        self._unavailable = unavailable
        self._on_error = on_error
        self.lock = threading.Lock()  # one writer at a time on `db`
        self.lock_wait = WRITE_LOCK_WAIT  # how long a write waits for another connection's write lock
        self.pause: Callable[[float], None] = time.sleep  # how it waits between tries (in the worker thread)
        path = Path(path)
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The file holds session records and telegrams: readable by this user only.
            path.touch(mode=0o600, exist_ok=True)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are exactly as written.
            self.db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last commits.
            # Telegrams are the one thing that must never be lost, so their writes use FULL (SqliteDatabase).
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._reader = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
            )
            self._identity = _identity(path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageConfigError(f"{setting}: cannot open the SQLite database {path}: {exc}") from None

    def failed(self, name: str, exc: BaseException) -> StoreUnavailable:
        """The error to raise for a failed operation, once it has been reported."""
        if self._on_error is not None:
            self._on_error("sqlite", name)
        error = self._unavailable()
        error.__cause__ = exc
        return error

    async def run(self, operation: Callable[[sqlite3.Connection], T], name: str, *, wait: float | None = None) -> T:
        """`operation` on the writer connection, in a worker thread, in one transaction of its own (BEGIN IMMEDIATE:
        under the file's write lock from its first statement, so no other process writes in between)."""

        def locked() -> T:
            with self.lock:
                return self.transaction(operation, wait=wait)

        try:
            return await anyio.to_thread.run_sync(locked)
        except _BUGS:
            raise
        except sqlite3.Error as exc:  # locked for longer than the timeout, disk full, I/O error, corrupt file
            raise self.failed(name, exc) from exc

    def read(self, sql: str, params: Sequence[Any], name: str) -> list[Any]:
        try:
            return self._reader.execute(sql, params).fetchall()
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise self.failed(name, exc) from exc

    async def ping(self) -> None:
        """The file is still the one opened, the read connection answers, and the write lock can be taken."""
        try:
            # An open SQLite file that was deleted or replaced (a volume unmounted, a data directory wiped) goes on
            # answering from the old inode, and everything written to it is lost when the process ends.
            if _identity(self.path) != self._identity:
                raise sqlite3.OperationalError(f"{self.path} is no longer the database file this store opened")
        except OSError as exc:
            raise self.failed("ping", exc) from exc
        except sqlite3.Error as exc:
            raise self.failed("ping", exc) from exc
        self.read("SELECT 1", (), "ping")

        # An empty transaction: it takes the write lock that every write needs, waiting briefly, so that a writer
        # stuck in another process makes us not ready rather than a probe that hangs.
        await self.run(lambda db: None, "ping", wait=PING_LOCK_WAIT)

    def transaction(self, body: Callable[[sqlite3.Connection], T], *, wait: float | None = None) -> T:
        """`body` on the writer connection between BEGIN IMMEDIATE and COMMIT; rolled back if it raises. The caller
        holds `lock` (or runs before anyone else can, at start-up)."""
        db = self.db
        begin_immediate(db, self.lock_wait if wait is None else wait, sleep=self.pause)
        try:
            result = body(db)
            db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT may leave the transaction open (a deferred constraint, a busy rollback journal): rolled
            # back here, or this connection would hold the file's write lock against every process until a restart.
            if db.in_transaction:  # else SQLite rolled it back itself (disk full, I/O error)
                db.execute("ROLLBACK")
            raise
        return result

    async def close(self) -> None:
        self._reader.close()
        await anyio.to_thread.run_sync(self.db.close)


class SqliteStore:
    def __init__(self, path: str | Path, clock: Clock, *, prefix: str = "", on_error: ErrorHook | None = None) -> None:
        self._clock = clock
        self._prefix = prefix
        self._file = _SqliteFile(path, setting="storage.url", unavailable=StoreUnavailable, on_error=on_error)
        try:
            self._file.db.executescript(_KV_SCHEMA)
        except sqlite3.Error as exc:
            raise StorageConfigError(f"storage.url: cannot use the SQLite database {path}: {exc}") from None
        self._writes = 0

    async def _run(self, operation: Callable[[sqlite3.Connection], T], name: str) -> T:
        return await self._file.run(operation, name)

    def _get_row(self, key: str, name: str) -> tuple[str, float] | None:
        rows = self._file.read(
            "SELECT value, expires_at FROM kv WHERE key = ? AND expires_at > ?",
            (self._prefix + key, self._clock.now()),
            name,
        )
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    async def get(self, key: str) -> str | None:
        row = self._get_row(key, "get")
        return None if row is None else row[0]

    async def set(self, key: str, value: str, ttl: float) -> None:
        key, expires_at = self._prefix + key, self._clock.now() + ttl

        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, expires_at))
            self._maybe_purge(db)

        await self._run(op, "set")

    async def add(self, key: str, value: str, ttl: float) -> bool:
        key, now = self._prefix + key, self._clock.now()

        def op(db: sqlite3.Connection) -> bool:
            live = db.execute("SELECT 1 FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            if live is not None:
                return False
            db.execute("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, now + ttl))
            return True

        return await self._run(op, "add")

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        key, now = self._prefix + key, self._clock.now()

        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE kv SET value = ?, expires_at = ? WHERE key = ? AND expires_at > ?", (value, now + ttl, key, now)
            )
            return cursor.rowcount == 1

        return await self._run(op, "replace")

    async def compare_and_set(self, key: str, expected: str, value: str, ttl: float) -> bool:
        key, now = self._prefix + key, self._clock.now()

        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE kv SET value = ?, expires_at = ? WHERE key = ? AND value = ? AND expires_at > ?",
                (value, now + ttl, key, expected, now),
            )
            return cursor.rowcount == 1

        return await self._run(op, "compare_and_set")

    async def pop(self, key: str) -> str | None:
        key, now = self._prefix + key, self._clock.now()

        def op(db: sqlite3.Connection) -> str | None:
            row = db.execute("DELETE FROM kv WHERE key = ? RETURNING value, expires_at", (key,)).fetchone()
            if row is None or row[1] <= now:
                return None
            return str(row[0])

        return await self._run(op, "pop")

    async def delete(self, key: str) -> None:
        key = self._prefix + key
        await self._run(lambda db: db.execute("DELETE FROM kv WHERE key = ?", (key,)), "delete")

    async def incr(self, key: str, ttl: float) -> int:
        key, now = self._prefix + key, self._clock.now()

        def op(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            if row is None:
                db.execute("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, '1', ?)", (key, now + ttl))
                return 1
            count = int(row[0]) + 1
            db.execute("UPDATE kv SET value = ? WHERE key = ?", (str(count), key))
            return count

        return await self._run(op, "incr")

    async def ttl(self, key: str) -> float | None:
        row = self._get_row(key, "ttl")
        return None if row is None else row[1] - self._clock.now()

    async def ping(self) -> None:
        await self._file.ping()

    async def index_put(self, key: str, member: str, value: str, *, rank: float, ttl: float, limit: int) -> list[str]:
        key, now = self._prefix + key, self._clock.now()

        def put(db: sqlite3.Connection) -> list[str]:
            # One transaction under the write lock (_SqliteFile.run): no other process sees the index past its limit.
            db.execute("DELETE FROM kv_index WHERE key = ? AND expires_at <= ?", (key, now))
            (longest,) = db.execute("SELECT max(expires_at) FROM kv_index WHERE key = ?", (key,)).fetchone()
            expires_at = max(now + ttl, longest or 0.0)
            db.execute(
                "INSERT INTO kv_index (key, member, value, rank, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (key, member) DO UPDATE SET value = excluded.value, rank = excluded.rank",
                (key, member, value, rank, expires_at),
            )
            db.execute("UPDATE kv_index SET expires_at = ? WHERE key = ?", (expires_at, key))
            (count,) = db.execute("SELECT count(*) FROM kv_index WHERE key = ?", (key,)).fetchone()
            if count <= limit:
                return []
            # Lowest rank first, ties by member: the order Redis's sorted set gives.
            evicted = [
                str(row[0])
                for row in db.execute(
                    "SELECT member FROM kv_index WHERE key = ? AND member != ? ORDER BY rank, member LIMIT ?",
                    (key, member, count - limit),
                )
            ]
            db.executemany("DELETE FROM kv_index WHERE key = ? AND member = ?", [(key, m) for m in evicted])
            return evicted

        def op(db: sqlite3.Connection) -> list[str]:
            evicted = put(db)
            self._maybe_purge(db)
            return evicted

        return await self._run(op, "index_put")

    async def index_remove(self, key: str, member: str) -> None:
        key = self._prefix + key
        await self._run(
            lambda db: db.execute("DELETE FROM kv_index WHERE key = ? AND member = ?", (key, member)), "index_remove"
        )

    async def index_items(self, key: str) -> dict[str, str]:
        # A read on the primary key: inline, like get().
        rows = self._file.read(
            "SELECT member, value FROM kv_index WHERE key = ? AND expires_at > ?",
            (self._prefix + key, self._clock.now()),
            "index_items",
        )
        return {str(member): str(value) for member, value in rows}

    def _maybe_purge(self, db: sqlite3.Connection) -> None:
        # Expired rows are invisible to reads already; deleting them now and then keeps the file small.
        self._writes += 1
        if self._writes % 500 == 0:
            now = self._clock.now()
            db.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))
            db.execute("DELETE FROM kv_index WHERE expires_at <= ?", (now,))

    async def close(self) -> None:
        await self._file.close()


_TELEGRAM_COLUMNS = "id, user_id, recipient, message, created_at, status"
_ACTIVITY_COLUMNS = "user_id, seq, at_ms, kind, outcome, detail, address, agent, prev_hash, hash"


_INSERT_TELEGRAM = (
    "INSERT INTO telegrams (id, user_id, recipient, message, created_at, status, idempotency_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING"
)


@dataclass(eq=False)
class _PendingWrite:
    """One request's durable write, waiting for the next group commit: what to run in the transaction, the name its
    failure is reported under, and the future its request awaits."""

    run: Callable[[sqlite3.Connection], Any]
    name: str
    answer: asyncio.Future[Any]


class SqliteDatabase:
    """Telegrams and the activity log in SQLite. The schema is brought up to date when it opens (storage/migrations.py).

    Group commit: an accepted telegram, and a security event, must survive an OS crash, so its transaction is synced
    to disk (synchronous=FULL) before the request is answered, and a sync takes milliseconds. Concurrent requests'
    writes (telegram inserts and activity events alike) therefore go into one queue, and one writer task at a time
    commits everything queued in one transaction with one sync, while the next requests queue up behind it. Each
    request is answered only once that commit has returned; each write runs in a savepoint of its own, so one that
    fails is rolled back and answered with its own error while the others commit; if the commit itself fails, every
    request of that batch gets the error and none of its writes is stored. The unique index still decides
    idempotency, within a batch as across them, and the writes of a batch run one after the other in the order they
    were queued, so an activity event reads the head of its user's chain as the events before it in the batch left
    it."""

    def __init__(self, path: str | Path, *, on_error: ErrorHook | None = None) -> None:
        self._file = _SqliteFile(path, setting="database.url", unavailable=DatabaseUnavailable, on_error=on_error)
        try:
            self._file.transaction(self._migrate)
            # This connection writes only durable records (and the migrations): every commit is synced to disk.
            self._file.db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StorageConfigError(f"database.url: cannot migrate the SQLite database {path}: {exc}") from None
        self._queue: list[_PendingWrite] = []
        self._writer: asyncio.Task[None] | None = None

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        # Inside BEGIN IMMEDIATE: of several workers starting at once, one migrates and the others then see it done.
        db.execute(migrations.SCHEMA_TABLE)
        applied = [row[0] for row in db.execute("SELECT version FROM schema_migrations")]
        for migration in migrations.pending(applied):
            for statement in migration.sqlite:
                db.execute(statement)
            db.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, time.time()),
            )

    async def _write(self, run: Callable[[sqlite3.Connection], T], name: str) -> T:
        """Run `run` in the next group commit; returns once that commit is on disk."""
        loop = asyncio.get_running_loop()
        pending = _PendingWrite(run, name, loop.create_future())
        self._queue.append(pending)
        if self._writer is None or self._writer.done():
            # A context of its own: the writer serves many requests, its log lines belong to none of them.
            self._writer = loop.create_task(self._write_queued(), context=contextvars.Context())
        # A request that goes away meanwhile (its client disconnected) cancels only its wait: its write stays in
        # the queue or the batch, and may be stored, as it could have been just before the disconnect.
        result: T = await pending.answer
        return result

    async def create_telegram(
        self, telegram: Telegram, idempotency_key: str | None, *, activity: EventBuilder | None = None
    ) -> tuple[Telegram, bool]:
        def create(db: sqlite3.Connection) -> tuple[Telegram, bool]:
            stored, created = self._insert(db, telegram, idempotency_key)
            if created and activity is not None:
                # In the telegram's own savepoint: if the event fails, the telegram is rolled back with it.
                self._append(db, telegram.user_id, activity)
            return stored, created

        return await self._write(create, "create_telegram")

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                outcomes = await anyio.to_thread.run_sync(self._commit_batch, batch)
            except sqlite3.Error as exc:  # BEGIN or COMMIT failed: nothing of this batch is stored
                for pending in batch:
                    _answer(pending.answer, exception=self._file.failed(pending.name, exc))
                continue
            except BaseException as exc:  # not a database error (a bug, or the loop shutting down): tell everyone
                for pending in batch:
                    _answer(pending.answer, exception=exc)
                raise
            for pending, (ok, outcome) in zip(batch, outcomes, strict=True):
                if ok:
                    _answer(pending.answer, result=outcome)
                elif isinstance(outcome, sqlite3.Error) and not isinstance(outcome, _BUGS):
                    _answer(pending.answer, exception=self._file.failed(pending.name, outcome))
                else:
                    _answer(pending.answer, exception=outcome)  # an error in our own SQL stays a bug (500)

    def _commit_batch(self, batch: list[_PendingWrite]) -> list[tuple[bool, Any]]:
        """In a worker thread: one transaction, a savepoint per write, one synced commit. Raises only if the
        transaction as a whole failed; a write's own failure is its outcome: (False, the error)."""

        def writes(db: sqlite3.Connection) -> list[tuple[bool, Any]]:
            outcomes: list[tuple[bool, Any]] = []
            for pending in batch:
                db.execute("SAVEPOINT write")
                try:
                    outcome = pending.run(db)
                except sqlite3.Error as exc:
                    if not db.in_transaction:  # SQLite rolled the whole transaction back (disk full, I/O error)
                        raise
                    db.execute("ROLLBACK TO write")
                    db.execute("RELEASE write")
                    outcomes.append((False, exc))
                else:
                    db.execute("RELEASE write")
                    outcomes.append((True, outcome))
            return outcomes

        with self._file.lock:
            # One COMMIT for the batch; synchronous=FULL: on disk when it returns.
            return self._file.transaction(writes)

    @staticmethod
    def _insert(db: sqlite3.Connection, telegram: Telegram, idempotency_key: str | None) -> tuple[Telegram, bool]:
        inserted = db.execute(
            _INSERT_TELEGRAM,
            (*as_row(telegram), idempotency_key),  # the columns in the dataclass's order
        )
        if inserted.rowcount == 1:
            return telegram, True
        row = db.execute(
            f"SELECT {_TELEGRAM_COLUMNS} FROM telegrams WHERE user_id = ? AND idempotency_key = ?",  # noqa: S608
            (telegram.user_id, idempotency_key),
        ).fetchone()
        return Telegram(*row), False

    async def list_telegrams(self, user_id: str, limit: int) -> list[Telegram]:
        # A read on an index: inline, like SqliteStore.get().
        rows = self._file.read(
            f"SELECT {_TELEGRAM_COLUMNS} FROM telegrams "  # noqa: S608 - a constant column list
            "WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (user_id, limit),
            "list_telegrams",
        )
        return [Telegram(*row) for row in rows]

    async def find_telegram(self, user_id: str, idempotency_key: str) -> Telegram | None:
        rows = self._file.read(
            f"SELECT {_TELEGRAM_COLUMNS} FROM telegrams WHERE user_id = ? AND idempotency_key = ?",  # noqa: S608
            (user_id, idempotency_key),
            "find_telegram",
        )
        return Telegram(*rows[0]) if rows else None

    # -- the activity log --------------------------------------------------------------------------------------------

    async def append_activity(self, user_id: str, build: EventBuilder) -> ActivityEvent:
        # A security event is as much a record as a telegram: synced to disk like one, in the same group commit.
        return await self._write(lambda db: self._append(db, user_id, build), "append_activity")

    @staticmethod
    def _append(db: sqlite3.Connection, user_id: str, build: EventBuilder) -> ActivityEvent:
        # Inside the group commit's BEGIN IMMEDIATE, which holds the write lock until the commit, so no other
        # process reads this head meanwhile; the primary key would refuse a second event with the same seq anyway.
        head = db.execute(
            "SELECT seq, hash FROM activity_events WHERE user_id = ? ORDER BY seq DESC LIMIT 1", (user_id,)
        ).fetchone()
        event = build(1, GENESIS) if head is None else build(int(head[0]) + 1, str(head[1]))
        db.execute(
            f"INSERT INTO activity_events ({_ACTIVITY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            as_row(event),
        )
        return event

    async def list_activity(self, user_id: str, before_seq: int | None, limit: int) -> list[ActivityEvent]:
        rows = self._file.read(
            f"SELECT {_ACTIVITY_COLUMNS} FROM activity_events WHERE user_id = ? AND seq < ? "  # noqa: S608
            "ORDER BY seq DESC LIMIT ?",
            (user_id, before_seq if before_seq is not None else 2**62, limit),
            "list_activity",
        )
        return [ActivityEvent(*row) for row in rows]

    async def activity_chains(self) -> AsyncIterator[list[ActivityEvent]]:
        users = self._file.read("SELECT DISTINCT user_id FROM activity_events ORDER BY user_id", (), "activity_chains")
        for (user_id,) in users:
            rows = self._file.read(
                f"SELECT {_ACTIVITY_COLUMNS} FROM activity_events WHERE user_id = ? ORDER BY seq",  # noqa: S608
                (user_id,),
                "activity_chains",
            )
            yield [ActivityEvent(*row) for row in rows]

    async def ping(self) -> None:
        await self._file.ping()

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.wait([self._writer])  # the last batch is committed and answered before the file closes
        await self._file.close()


def _answer(future: asyncio.Future[Any], *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # its request went away (cancelled its wait)
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino
