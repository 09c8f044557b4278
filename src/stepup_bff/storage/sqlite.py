"""SQLite store: the embedded default, safe for several worker processes on one machine.

WAL mode lets readers run alongside the single writer; every read-modify-write runs in a `BEGIN IMMEDIATE`
transaction, which takes the database's write lock up front, so two processes can never both see "absent" or
both read the same counter. Writes run in a worker thread, so waiting for another process's write lock never
stalls the event loop. Plain reads (`get`, `ttl`, `list_telegrams`; every authenticated request does one) run
inline on their own read-only connection: a WAL reader never waits for a writer, and an indexed lookup takes
microseconds, far less than the hop to a worker thread and back (measured with wrk on one worker: GET
/api/session 516 -> 601 requests/s, GET /api/telegrams 350 -> 450).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio.to_thread

from ..clock import Clock
from .base import Telegram

if TYPE_CHECKING:
    from ..ops.metrics import StoreBackend

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_expires_at ON kv (expires_at);
CREATE TABLE IF NOT EXISTS telegrams (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    idempotency_key TEXT
);
CREATE INDEX IF NOT EXISTS telegrams_by_user ON telegrams (user_id, created_at DESC);
CREATE UNIQUE INDEX IF NOT EXISTS telegrams_idempotency
    ON telegrams (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
"""


# How long a readiness ping waits for another process's write lock: well inside a probe's timeout.
PING_BUSY_TIMEOUT_MS = 1000


class SqliteStore:
    def __init__(
        self, path: str | Path, clock: Clock, *, on_error: Callable[[StoreBackend, str], None] | None = None
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Told the backend and the operation whenever SQLite fails one (the app counts them: ops/metrics.py).
        self._on_error = on_error
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # The file holds refresh tokens: readable by this user only.
        path.touch(mode=0o600, exist_ok=True)
        self._path = path
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so transactions are exactly as written.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode; only an OS crash may lose the last commits.
        # Telegrams are the one thing that must never be lost, so their writes use FULL (see create_telegram).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._writes = 0
        # The event loop's own read-only connection (used from that one thread only).
        self._reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=5.0)
        self._identity = _identity(path)

    def _failed(self, name: str) -> None:
        if self._on_error is not None:
            self._on_error("sqlite", name)

    async def _run(self, operation: Callable[[sqlite3.Connection], T], name: str = "write") -> T:
        def locked() -> T:
            with self._lock:
                return operation(self._db)

        try:
            return await anyio.to_thread.run_sync(locked)
        except sqlite3.Error:
            self._failed(name)
            raise

    def _read(self, name: str, sql: str, parameters: tuple[object, ...]) -> list[Any]:
        try:
            return self._reader.execute(sql, parameters).fetchall()
        except sqlite3.Error:
            self._failed(name)
            raise

    def _transaction(self, db: sqlite3.Connection, body: Callable[[], T]) -> T:
        db.execute("BEGIN IMMEDIATE")
        try:
            result = body()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    async def get(self, key: str) -> str | None:
        now = self._clock.now()
        rows = self._read("get", "SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now))
        return str(rows[0][0]) if rows else None

    async def set(self, key: str, value: str, ttl: float) -> None:
        expires_at = self._clock.now() + ttl

        def op(db: sqlite3.Connection) -> None:
            db.execute("INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, expires_at))
            self._maybe_purge(db)

        await self._run(op, "set")

    async def add(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock.now()

        def op(db: sqlite3.Connection) -> bool:
            def body() -> bool:
                live = db.execute("SELECT 1 FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
                if live is not None:
                    return False
                db.execute(
                    "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, ?, ?)", (key, value, now + ttl)
                )
                return True

            return self._transaction(db, body)

        return await self._run(op, "add")

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        now = self._clock.now()

        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE kv SET value = ?, expires_at = ? WHERE key = ? AND expires_at > ?", (value, now + ttl, key, now)
            )
            return cursor.rowcount == 1

        return await self._run(op, "replace")

    async def pop(self, key: str) -> str | None:
        now = self._clock.now()

        def op(db: sqlite3.Connection) -> str | None:
            def body() -> str | None:
                row = db.execute("DELETE FROM kv WHERE key = ? RETURNING value, expires_at", (key,)).fetchone()
                if row is None or row[1] <= now:
                    return None
                return str(row[0])

            return self._transaction(db, body)

        return await self._run(op, "pop")

    async def delete(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM kv WHERE key = ?", (key,)), "delete")

    async def incr(self, key: str, ttl: float) -> int:
        now = self._clock.now()

        def op(db: sqlite3.Connection) -> int:
            def body() -> int:
                row = db.execute("SELECT value FROM kv WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
                if row is None:
                    db.execute(
                        "INSERT OR REPLACE INTO kv (key, value, expires_at) VALUES (?, '1', ?)", (key, now + ttl)
                    )
                    return 1
                count = int(row[0]) + 1
                db.execute("UPDATE kv SET value = ? WHERE key = ?", (str(count), key))
                return count

            return self._transaction(db, body)

        return await self._run(op, "incr")

    async def ttl(self, key: str) -> float | None:
        now = self._clock.now()
        rows = self._read("ttl", "SELECT expires_at FROM kv WHERE key = ? AND expires_at > ?", (key, now))
        return float(rows[0][0]) - now if rows else None

    async def create_telegram(self, telegram: Telegram, idempotency_key: str | None) -> tuple[Telegram, bool]:
        def op(db: sqlite3.Connection) -> tuple[Telegram, bool]:
            def body() -> tuple[Telegram, bool]:
                if idempotency_key is not None:
                    row = db.execute(
                        "SELECT id, user_id, recipient, message, created_at, status FROM telegrams "
                        "WHERE user_id = ? AND idempotency_key = ?",
                        (telegram.user_id, idempotency_key),
                    ).fetchone()
                    if row is not None:
                        return Telegram(*row), False
                db.execute(
                    "INSERT INTO telegrams (id, user_id, recipient, message, created_at, status, idempotency_key) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        telegram.id,
                        telegram.user_id,
                        telegram.recipient,
                        telegram.message,
                        telegram.created_at,
                        telegram.status,
                        idempotency_key,
                    ),
                )
                return telegram, True

            # An accepted telegram must survive even an OS crash: sync this commit to disk.
            db.execute("PRAGMA synchronous=FULL")
            try:
                return self._transaction(db, body)
            finally:
                db.execute("PRAGMA synchronous=NORMAL")

        return await self._run(op, "create_telegram")

    async def list_telegrams(self, user_id: str, limit: int) -> list[Telegram]:
        # A read on an index: inline, like get().
        rows = self._read(
            "list_telegrams",
            "SELECT id, user_id, recipient, message, created_at, status FROM telegrams "
            "WHERE user_id = ? ORDER BY created_at DESC, rowid DESC LIMIT ?",
            (user_id, limit),
        )
        return [Telegram(*row) for row in rows]

    def _maybe_purge(self, db: sqlite3.Connection) -> None:
        # Expired rows are invisible to reads already; deleting them now and then keeps the file small.
        self._writes += 1
        if self._writes % 500 == 0:
            db.execute("DELETE FROM kv WHERE expires_at <= ?", (self._clock.now(),))

    async def ping(self) -> None:
        """The file is still the one opened, the read connection answers, and the write lock can be taken."""
        try:
            # An open SQLite file that was deleted or replaced (a volume unmounted, a data directory wiped) goes
            # on answering from the old inode, and everything written to it is lost when the process ends.
            if _identity(self._path) != self._identity:
                raise sqlite3.OperationalError(f"{self._path} is no longer the database file this store opened")
        except OSError as exc:
            self._failed("ping")
            raise sqlite3.OperationalError(f"{self._path} cannot be read: {exc.strerror}") from exc
        except sqlite3.Error:
            self._failed("ping")
            raise
        self._read("ping", "SELECT 1 FROM kv LIMIT 1", ())

        def op(db: sqlite3.Connection) -> None:
            # BEGIN IMMEDIATE takes the write lock that every write needs; waiting briefly, so that a writer stuck
            # in another process makes us not ready rather than a probe that hangs.
            db.execute(f"PRAGMA busy_timeout = {PING_BUSY_TIMEOUT_MS}")
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("ROLLBACK")
            finally:
                db.execute("PRAGMA busy_timeout = 5000")

        await self._run(op, "ping")

    async def close(self) -> None:
        self._reader.close()
        await self._run(lambda db: db.close(), "close")


def _identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino
