"""The SQLite store's atomic operations, including across processes sharing one file."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import anyio
import pytest

from conftest import FakeClock
from stepup_bff.clock import SystemClock
from stepup_bff.storage import SqliteStore, Telegram

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> SqliteStore:
    return SqliteStore(tmp_path / "s.sqlite3", clock)


async def test_get_set_expiry(store: SqliteStore, clock: FakeClock) -> None:
    await store.set("k", "v", ttl=10)
    assert await store.get("k") == "v"
    assert await store.ttl("k") == 10
    clock.advance(10)
    assert await store.get("k") is None
    assert await store.ttl("k") is None


async def test_add_is_insert_if_absent(store: SqliteStore, clock: FakeClock) -> None:
    assert await store.add("k", "first", ttl=5)
    assert not await store.add("k", "second", ttl=5)
    assert await store.get("k") == "first"
    clock.advance(5)
    assert await store.add("k", "third", ttl=5)  # an expired key counts as absent


async def test_pop_gets_and_deletes(store: SqliteStore, clock: FakeClock) -> None:
    await store.set("k", "v", ttl=5)
    assert await store.pop("k") == "v"
    assert await store.pop("k") is None
    await store.set("old", "v", ttl=1)
    clock.advance(2)
    assert await store.pop("old") is None


async def test_incr_counts_within_a_fixed_window(store: SqliteStore, clock: FakeClock) -> None:
    assert [await store.incr("c", ttl=60) for _ in range(3)] == [1, 2, 3]
    clock.advance(30)
    assert await store.incr("c", ttl=60) == 4  # the window does not slide
    clock.advance(30)
    assert await store.incr("c", ttl=60) == 1


async def test_concurrent_pops_hand_out_the_value_once(store: SqliteStore) -> None:
    await store.set("challenge", "secret", ttl=60)
    results: list[str | None] = []

    async def take() -> None:
        results.append(await store.pop("challenge"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(take)
    assert results.count("secret") == 1


def _worker(path: str, key: str, rounds: int, queue: multiprocessing.Queue[list[int]]) -> None:
    async def run() -> list[int]:
        store = SqliteStore(path, SystemClock())
        try:
            return [await store.incr(key, ttl=600) for _ in range(rounds)]
        finally:
            await store.close()

    queue.put(anyio.run(run))


def test_increments_are_atomic_across_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    SqliteStore(path, SystemClock())  # create the schema once
    context = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[list[int]] = context.Queue()
    workers = [context.Process(target=_worker, args=(path, "n", 50, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    seen = sorted(value for _ in workers for value in queue.get(timeout=60))
    for worker in workers:
        worker.join(timeout=60)
    # Four processes, 50 increments each: every count from 1 to 200 handed out exactly once.
    assert seen == list(range(1, 201))


async def test_telegrams_are_idempotent_per_user_and_listed_newest_first(store: SqliteStore) -> None:
    first = Telegram("t1", "u1", "Bob", "Happy birthday", created_at=1.0)
    again = Telegram("t2", "u1", "Bob", "Happy birthday", created_at=2.0)
    stored, created = await store.create_telegram(first, "key-1")
    assert created and stored == first
    stored, created = await store.create_telegram(again, "key-1")
    assert not created and stored == first
    # Another user may use the same key.
    _, created = await store.create_telegram(Telegram("t3", "u2", "Eve", "Hi", created_at=3.0), "key-1")
    assert created
    await store.create_telegram(Telegram("t4", "u1", "Carol", "Hello", created_at=4.0), None)
    assert [t.id for t in await store.list_telegrams("u1", limit=10)] == ["t4", "t1"]


async def test_database_file_is_private_and_uses_wal(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "private.sqlite3"
    store = SqliteStore(path, clock)
    await store.set("k", "v", ttl=5)
    assert path.stat().st_mode & 0o077 == 0
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    await store.close()


async def test_expired_rows_are_purged_as_writes_go_by(tmp_path: Path, clock: FakeClock) -> None:
    store = SqliteStore(tmp_path / "purge.sqlite3", clock)
    await store.set("old", "1", ttl=1)
    clock.advance(2)
    for i in range(500):  # every 500th write sweeps out what has expired
        await store.set(f"live-{i}", "1", ttl=100)
    rows = sqlite3.connect(tmp_path / "purge.sqlite3").execute("SELECT key FROM kv WHERE key = 'old'").fetchall()
    assert rows == []
    await store.close()


def _write(path: str, key: str, value: str) -> None:
    async def run() -> None:
        store = SqliteStore(path, SystemClock())
        try:
            await store.set(key, value, ttl=600)
        finally:
            await store.close()

    anyio.run(run)


async def test_inline_reads_see_what_another_process_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    reader = SqliteStore(path, SystemClock())
    assert await reader.get("session:x") is None  # the read connection has been used before the write
    context = multiprocessing.get_context("spawn")
    writer = context.Process(target=_write, args=(path, "session:x", "from-another-worker"))
    writer.start()
    writer.join(timeout=60)
    assert writer.exitcode == 0
    assert await reader.get("session:x") == "from-another-worker"
    await reader.close()


async def test_replace_updates_only_what_exists(store: SqliteStore, clock: FakeClock) -> None:
    assert not await store.replace("k", "v", ttl=5)
    assert await store.get("k") is None  # never created
    await store.set("k", "v1", ttl=5)
    assert await store.replace("k", "v2", ttl=50)
    assert await store.get("k") == "v2" and await store.ttl("k") == 50
    clock.advance(50)
    assert not await store.replace("k", "v3", ttl=5)  # expired counts as absent


async def test_ping_answers_until_the_store_is_closed(tmp_path: Path, clock: FakeClock) -> None:
    failed: list[tuple[str, str]] = []
    store = SqliteStore(tmp_path / "ping.sqlite3", clock, on_error=lambda backend, op: failed.append((backend, op)))
    await store.ping()
    await store.close()
    with pytest.raises(sqlite3.Error):
        await store.ping()
    assert failed[-1] == ("sqlite", "ping")


async def test_every_failed_operation_is_reported_by_name(tmp_path: Path, clock: FakeClock) -> None:
    failed: list[tuple[str, str]] = []
    store = SqliteStore(tmp_path / "e.sqlite3", clock, on_error=lambda backend, op: failed.append((backend, op)))
    await store.close()
    calls = {
        "get": store.get("k"),
        "ttl": store.ttl("k"),
        "set": store.set("k", "v", ttl=1),
        "incr": store.incr("k", ttl=1),
        "list_telegrams": store.list_telegrams("u", limit=1),
    }
    for name, call in calls.items():
        with pytest.raises(sqlite3.Error):
            await call
        assert failed[-1] == ("sqlite", name)
