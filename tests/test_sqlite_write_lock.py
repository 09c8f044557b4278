"""SQLite's write lock, taken in short steps (storage/sqlite.py, begin_immediate): with two workers on one file, each
group commit holds the lock a millisecond or two, and SQLite's own busy handler (sleeping 1, 2, 5, ... 100 ms between
tries) made a writer that kept finding it taken wait hundreds of milliseconds. The waiting is ours now: pauses from
50 µs doubling to 1 ms, the lock taken as soon as a try finds it free, the busy error at the deadline, any other error
at once, and the connection's busy timeout as it was after. No test here measures time: the pauses are recorded."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeClock
from stepup_bff.errors import StoreUnavailable
from stepup_bff.storage import SqliteDatabase, SqliteStore, Telegram
from stepup_bff.storage.sqlite import BUSY_TIMEOUT_MS, begin_immediate

pytestmark = pytest.mark.anyio

SHORT_STEPS = [50e-6, 100e-6, 200e-6, 400e-6, 800e-6, 1e-3, 1e-3]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "shared.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE IF NOT EXISTS t (a)")
    return path


@pytest.fixture
def other(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's connection to the same file, which takes the write lock (a neighbour's group commit)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    yield connection
    if connection.in_transaction:
        connection.execute("ROLLBACK")
    connection.close()


def busy_timeout(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA busy_timeout").fetchone()[0])


def releasing_after(tries: int, other: sqlite3.Connection, pauses: list[float]) -> Callable[[float], None]:
    """A pause that records itself and, at the `tries`-th, has the other connection let go of the lock."""

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == tries:
            other.execute("COMMIT")

    return pause


def waiting_out(wait: float, path: Path, other: sqlite3.Connection) -> tuple[list[float], sqlite3.OperationalError]:
    """begin_immediate against a lock the other connection never lets go of, on a fake clock that each pause moves on:
    the pauses it took, and what it raised at its deadline."""
    db = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    clock = FakeClock()
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        clock.advance(seconds)

    with pytest.raises(sqlite3.OperationalError) as raised:
        begin_immediate(db, wait, sleep=pause, clock=clock.now)
    assert not db.in_transaction and busy_timeout(db) == BUSY_TIMEOUT_MS  # the connection as it was
    db.close()
    return pauses, raised.value


def test_a_taken_lock_is_waited_for_in_short_steps_and_taken_once_it_is_free(
    path: Path, other: sqlite3.Connection
) -> None:
    db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    other.execute("BEGIN IMMEDIATE")
    pauses: list[float] = []
    handler_off: list[bool] = []

    def pause(seconds: float) -> None:
        # Each try came back at once: SQLite's own busy handler, with its long sleeps, is off while we wait.
        handler_off.append(busy_timeout(db) == 0)
        releasing_after(7, other, pauses)(seconds)

    begin_immediate(db, 5.0, sleep=pause)
    assert db.in_transaction  # the lock is ours, on the first try after the other let go
    assert pauses == pytest.approx(SHORT_STEPS) and all(handler_off)
    assert busy_timeout(db) == BUSY_TIMEOUT_MS  # the rest of the connection's statements wait as before
    db.execute("INSERT INTO t VALUES (1)")
    db.execute("COMMIT")
    db.close()


def test_the_wait_ends_at_its_deadline_with_the_busy_error(path: Path, other: sqlite3.Connection) -> None:
    pauses, error = waiting_out(0.01, path, other)
    assert error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY  # what the callers report as unavailable
    assert sum(pauses) <= 0.01 and len(pauses) > 7  # short steps up to the deadline, and not past it


def test_an_error_other_than_a_taken_lock_is_raised_at_once(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    pauses: list[float] = []
    with pytest.raises(sqlite3.OperationalError, match="within a transaction"):
        begin_immediate(db, 5.0, sleep=pauses.append)
    assert pauses == [] and busy_timeout(db) == BUSY_TIMEOUT_MS
    db.execute("ROLLBACK")
    db.close()


async def test_a_store_write_waits_for_another_process_in_short_steps(path: Path, other: sqlite3.Connection) -> None:
    store = SqliteStore(path, FakeClock())
    try:
        other.execute("BEGIN IMMEDIATE")
        pauses: list[float] = []
        store._file.pause = releasing_after(3, other, pauses)
        await store.set("k", "v", ttl=60)
        assert pauses == pytest.approx(SHORT_STEPS[:3])
        assert await store.get("k") == "v"
        # Single statements, too, run in a transaction that took the lock this way: a compare-and-set, a delete.
        other.execute("BEGIN IMMEDIATE")
        pauses.clear()
        assert await store.compare_and_set("k", "v", "w", ttl=60)
        assert pauses == pytest.approx(SHORT_STEPS[:3]) and await store.get("k") == "w"
    finally:
        await store.close()


async def test_a_store_that_cannot_get_the_lock_in_time_is_unavailable(path: Path, other: sqlite3.Connection) -> None:
    store = SqliteStore(path, FakeClock())
    try:
        other.execute("BEGIN IMMEDIATE")
        store._file.lock_wait = 0.005
        pauses: list[float] = []

        def pause(seconds: float) -> None:
            pauses.append(seconds)
            time.sleep(seconds)

        store._file.pause = pause
        with pytest.raises(StoreUnavailable):
            await store.set("k", "v", ttl=60)
        assert pauses and sum(pauses) <= 0.005  # it waited in our steps, and no longer than its lock_wait
        other.execute("COMMIT")
        await store.set("k", "v", ttl=60)  # and it works again at once, without a restart
        assert await store.get("k") == "v"
    finally:
        await store.close()


async def test_a_group_commit_waits_for_another_process_in_short_steps(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite3"
    database = SqliteDatabase(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        pauses: list[float] = []
        database._file.pause = releasing_after(4, other, pauses)
        telegram = Telegram("t1", "u1", "Bob", "la la la", created_at=1.0)
        assert await database.create_telegram(telegram, "key-1") == (telegram, True)
        assert pauses == pytest.approx(SHORT_STEPS[:4])
        assert [t.id for t in await database.list_telegrams("u1", limit=5)] == ["t1"]
    finally:
        if other.in_transaction:
            other.execute("ROLLBACK")
        other.close()
        await database.close()


def test_a_lock_held_for_long_is_polled_every_5_ms_after_the_first_50(path: Path, other: sqlite3.Connection) -> None:
    # A backup tool or a stuck process, not a neighbour's commit: 1 ms polls for seconds would cost CPU for nothing.
    pauses, _ = waiting_out(0.2, path, other)
    waited = 0.0
    for seconds in pauses:
        assert seconds == pytest.approx(5e-3 if waited > 0.05 else min(seconds, 1e-3))
        waited += seconds
    assert pauses[-1] == pytest.approx(5e-3) and waited <= 0.2


class _Scripted:
    """A connection whose statements answer as scripted: enough of sqlite3.Connection for begin_immediate."""

    def __init__(self, failures: dict[str, list[BaseException]]) -> None:
        self.failures = failures
        self.statements: list[str] = []
        self.in_transaction = False

    def execute(self, sql: str) -> None:
        self.statements.append(sql)
        queued = self.failures.get(sql)
        if queued:
            raise queued.pop(0)
        if sql == "BEGIN IMMEDIATE":
            self.in_transaction = True
        elif sql == "ROLLBACK":
            self.in_transaction = False


def _error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database is locked")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]  # as sqlite3 sets it: the extended result code
    return error


def test_an_extended_busy_code_is_waited_for_too() -> None:
    # SQLITE_BUSY_RECOVERY (another process recovering the WAL) and SQLITE_BUSY_SNAPSHOT are both "wait a little".
    db = _Scripted({"BEGIN IMMEDIATE": [_error(261), _error(517)]})
    pauses: list[float] = []
    begin_immediate(db, 5.0, sleep=pauses.append)  # type: ignore[arg-type]
    assert db.in_transaction and pauses == pytest.approx(SHORT_STEPS[:2])
    # SQLITE_LOCKED (6) is not a lock another process will let go of: at once.
    locked = _Scripted({"BEGIN IMMEDIATE": [_error(6)]})
    with pytest.raises(sqlite3.OperationalError):
        begin_immediate(locked, 5.0, sleep=pauses.append)  # type: ignore[arg-type]
    assert len(pauses) == 2 and not locked.in_transaction


def test_a_transaction_is_rolled_back_if_the_busy_timeout_cannot_be_restored() -> None:
    restore = f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"
    db = _Scripted({restore: [sqlite3.OperationalError("disk I/O error")]})
    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        begin_immediate(db, 5.0, sleep=lambda seconds: None)  # type: ignore[arg-type]
    assert db.statements[-1] == "ROLLBACK" and not db.in_transaction  # no transaction the caller never saw


async def test_a_commit_that_fails_leaves_no_transaction_open(path: Path, other: sqlite3.Connection) -> None:
    store = SqliteStore(path, FakeClock())
    try:
        db = store._file.db
        # A deferred foreign key: the INSERT passes and the COMMIT fails, leaving SQLite's transaction open.
        db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        db.execute("CREATE TABLE child (parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)")
        db.execute("PRAGMA foreign_keys = ON")
        with pytest.raises(sqlite3.IntegrityError):
            store._file.transaction(lambda writer: writer.execute("INSERT INTO child VALUES (42)"))
        assert not db.in_transaction  # rolled back: not holding the file's write lock
        other.execute("PRAGMA busy_timeout = 0")
        other.execute("BEGIN IMMEDIATE")  # another process can write at once: it does not wait at all here
        other.execute("ROLLBACK")
        await store.set("k", "v", ttl=60)  # and so can this one
        assert await store.get("k") == "v"
    finally:
        await store.close()


async def test_every_store_write_runs_in_a_transaction_that_took_the_lock_first(path: Path) -> None:
    store = SqliteStore(path, FakeClock())
    try:
        statements: list[str] = []
        store._file.db.set_trace_callback(statements.append)
        writes: list[tuple[str, Callable[[], Any]]] = [
            ("set", lambda: store.set("k", "v", ttl=60)),
            ("replace", lambda: store.replace("k", "w", ttl=60)),
            ("compare_and_set", lambda: store.compare_and_set("k", "w", "x", ttl=60)),
            ("index_put", lambda: store.index_put("i", "m", "v", rank=1.0, ttl=60, limit=5)),
            ("index_remove", lambda: store.index_remove("i", "m")),
            ("delete", lambda: store.delete("k")),
        ]
        for name, write in writes:
            statements.clear()
            await write()
            begin = statements.index("BEGIN IMMEDIATE")
            assert statements[begin - 1] == "PRAGMA busy_timeout = 0", (name, statements)
            assert statements[-1] == "COMMIT", (name, statements)
            # Everything the write did ran between the two: nothing in autocommit, outside the lock.
            work = [sql for sql in statements[begin + 1 : -1] if not sql.startswith("PRAGMA")]
            assert work and all(not sql.startswith(("BEGIN", "COMMIT")) for sql in work), (name, statements)
    finally:
        await store.close()
