"""The Store contract, held against SQLite and a real Redis alike: expiry, the atomic operations, key prefixes,
and failing closed (StoreUnavailable) when the store goes away, then recovering without a restart."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from conftest import FakeClock
from stepup_bff.clock import SystemClock
from stepup_bff.errors import StoreUnavailable
from stepup_bff.settings import StorageSettings
from stepup_bff.storage import SqliteStore, StorageConfigError, Store, open_store
from support.backends import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Backend:
    """A store plus a way to let time pass for it: SQLite follows the injected clock; Redis expires keys by its own
    clock, so its keys are aged instead (RedisServer.age)."""

    name: str
    store: Store
    clock: FakeClock
    age: Callable[[float], None]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.age(seconds)


async def _open(
    name: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest, prefix: str = "stepup:"
) -> AsyncIterator[Backend]:
    if name == "sqlite":
        settings = StorageSettings(url=f"sqlite:///{tmp_path / 's.sqlite3'}", prefix=prefix)
        age: Callable[[float], None] = lambda seconds: None  # noqa: E731
    else:
        redis: RedisServer = request.getfixturevalue("redis_live")
        settings = StorageSettings(url=redis.url, prefix=prefix)
        age = redis.age
    async with open_store(settings, clock) as store:
        yield Backend(name, store, clock, age)


BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.live)]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Backend]:
    async for opened in _open(request.param, tmp_path, clock, request):
        yield opened


async def test_get_set_expiry(backend: Backend) -> None:
    store = backend.store
    await store.set("k", "v", ttl=10)
    assert await store.get("k") == "v"
    assert await store.ttl("k") == pytest.approx(10, abs=0.1)
    backend.advance(10)
    assert await store.get("k") is None
    assert await store.ttl("k") is None


async def test_add_is_insert_if_absent(backend: Backend) -> None:
    store = backend.store
    assert await store.add("k", "first", ttl=5)
    assert not await store.add("k", "second", ttl=5)
    assert await store.get("k") == "first"
    backend.advance(5)
    assert await store.add("k", "third", ttl=5)  # an expired key counts as absent


async def test_pop_gets_and_deletes(backend: Backend) -> None:
    store = backend.store
    await store.set("k", "v", ttl=5)
    assert await store.pop("k") == "v"
    assert await store.pop("k") is None
    await store.set("old", "v", ttl=1)
    backend.advance(2)
    assert await store.pop("old") is None


async def test_incr_counts_within_a_fixed_window(backend: Backend) -> None:
    store = backend.store
    assert [await store.incr("c", ttl=60) for _ in range(3)] == [1, 2, 3]
    backend.advance(30)
    assert await store.incr("c", ttl=60) == 4  # the window does not slide
    assert await store.ttl("c") == pytest.approx(30, abs=0.2)
    backend.advance(30)
    assert await store.incr("c", ttl=60) == 1


async def test_a_counter_is_never_left_without_an_expiry(backend: Backend) -> None:
    await backend.store.incr("fresh", ttl=60)
    remaining = await backend.store.ttl("fresh")
    assert remaining is not None and 0 < remaining <= 60


async def test_concurrent_pops_hand_out_the_value_once(backend: Backend) -> None:
    store = backend.store
    await store.set("challenge", "secret", ttl=60)
    results: list[str | None] = []

    async def take() -> None:
        results.append(await store.pop("challenge"))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(take)
    assert results.count("secret") == 1


async def test_concurrent_adds_let_exactly_one_in(backend: Backend) -> None:
    won: list[bool] = []

    async def lock() -> None:
        won.append(await backend.store.add("lock", "1", ttl=30))

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(lock)
    assert won.count(True) == 1


async def test_replace_updates_only_what_exists(backend: Backend) -> None:
    store = backend.store
    assert not await store.replace("k", "v", ttl=5)
    assert await store.get("k") is None  # never created
    await store.set("k", "v1", ttl=5)
    assert await store.replace("k", "v2", ttl=50)
    assert await store.get("k") == "v2" and await store.ttl("k") == pytest.approx(50, abs=0.1)
    backend.advance(50)
    assert not await store.replace("k", "v3", ttl=5)  # expired counts as absent


async def test_compare_and_set_updates_only_the_value_it_was_given(backend: Backend) -> None:
    store = backend.store
    assert not await store.compare_and_set("k", "v1", "v2", ttl=5)
    assert await store.get("k") is None  # never created
    await store.set("k", "v1", ttl=5)
    assert await store.compare_and_set("k", "v1", "v2", ttl=50)
    assert await store.get("k") == "v2" and await store.ttl("k") == pytest.approx(50, abs=0.1)
    assert not await store.compare_and_set("k", "v1", "v3", ttl=5)  # another write came first
    assert await store.get("k") == "v2"
    backend.advance(50)
    assert not await store.compare_and_set("k", "v2", "v4", ttl=5)  # expired counts as absent


async def test_delete_and_ping(backend: Backend) -> None:
    await backend.store.set("k", "v", ttl=5)
    await backend.store.delete("k")
    assert await backend.store.get("k") is None
    await backend.store.delete("never-there")
    await backend.store.ping()


async def test_an_index_holds_members_and_their_values(backend: Backend) -> None:
    store = backend.store
    assert await store.index_items("sessions:{u}") == {}
    assert await store.index_put("sessions:{u}", "a", "A", rank=1, ttl=60, limit=3) == []
    assert await store.index_put("sessions:{u}", "b", "B", rank=2, ttl=60, limit=3) == []
    assert await store.index_put("sessions:{u}", "a", "A2", rank=1, ttl=60, limit=3) == []  # replaced, not added
    assert await store.index_items("sessions:{u}") == {"a": "A2", "b": "B"}
    assert await store.index_items("sessions:{other}") == {}
    await store.index_remove("sessions:{u}", "a")
    await store.index_remove("sessions:{u}", "never-there")
    assert await store.index_items("sessions:{u}") == {"b": "B"}


async def test_an_index_past_its_limit_gives_up_its_lowest_ranked_others(backend: Backend) -> None:
    store = backend.store
    for rank, member in enumerate("abc"):
        await store.index_put("i", member, member.upper(), rank=10 + rank, ttl=60, limit=3)
    assert await store.index_put("i", "d", "D", rank=20, ttl=60, limit=3) == ["a"]
    # A member put with the lowest rank of all stays: the others make room for it.
    assert await store.index_put("i", "e", "E", rank=0, ttl=60, limit=3) == ["b"]
    assert await store.index_items("i") == {"c": "C", "d": "D", "e": "E"}
    assert await store.index_put("i", "f", "F", rank=30, ttl=60, limit=1) == ["e", "c", "d"]
    assert await store.index_items("i") == {"f": "F"}


async def test_an_index_expires_whole_and_a_put_never_shortens_it(backend: Backend) -> None:
    store = backend.store
    await store.index_put("i", "a", "A", rank=1, ttl=100, limit=5)
    backend.advance(50)
    await store.index_put("i", "b", "B", rank=2, ttl=10, limit=5)  # shorter than what is left: no effect
    backend.advance(49)
    assert await store.index_items("i") == {"a": "A", "b": "B"}
    await store.index_put("i", "c", "C", rank=3, ttl=100, limit=5)  # every member lives on with the latest put
    backend.advance(99)
    assert set(await store.index_items("i")) == {"a", "b", "c"}
    backend.advance(2)
    assert await store.index_items("i") == {}


async def test_concurrent_index_puts_never_leave_it_past_its_limit(backend: Backend) -> None:
    evicted: list[str] = []

    async def put(n: int) -> None:
        evicted.extend(await backend.store.index_put("i", f"m{n:02}", "x", rank=n, ttl=60, limit=5))

    async with anyio.create_task_group() as group:
        for n in range(30):
            group.start_soon(put, n)
    left = await backend.store.index_items("i")
    assert len(left) == 5
    # Every member is either still there or was handed to exactly one caller to end.
    assert sorted([*left, *evicted]) == [f"m{n:02}" for n in range(30)]


@pytest.mark.parametrize("name", BACKENDS)
async def test_the_prefix_separates_deployments_sharing_a_store(
    name: str, tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    async for blue in _open(name, tmp_path, clock, request, prefix="blue:"):
        async for green in _open(name, tmp_path, clock, request, prefix="green:"):
            await blue.store.set("session:x", "blue's", ttl=60)
            assert await green.store.get("session:x") is None
            assert await green.store.add("session:x", "green's", ttl=60)
            assert await blue.store.pop("session:x") == "blue's"
            assert await green.store.get("session:x") == "green's"
    if name == "sqlite":
        keys = {row[0] for row in sqlite3.connect(tmp_path / "s.sqlite3").execute("SELECT key FROM kv")}
    else:
        keys = set(request.getfixturevalue("redis_live").client().keys("*"))
    assert keys == {"green:session:x"}


# -- Redis: atomic across clients, and failing closed ------------------------------------------------------------


@pytest.mark.live
async def test_redis_increments_are_atomic_across_clients(redis_live: RedisServer) -> None:
    settings = StorageSettings(url=redis_live.url)
    seen: list[int] = []
    async with open_store(settings, SystemClock()) as first, open_store(settings, SystemClock()) as second:

        async def count(store: Store) -> None:
            for _ in range(50):
                seen.append(await store.incr("n", ttl=600))

        async with anyio.create_task_group() as group:
            for store in (first, second, first, second):
                group.start_soon(count, store)
    assert sorted(seen) == list(range(1, 201))
    assert 0 < redis_live.client().pttl("stepup:n") <= 600_000


@pytest.mark.live
async def test_redis_over_a_unix_socket(redis_live: RedisServer) -> None:
    async with open_store(StorageSettings(url=redis_live.unix_url), SystemClock()) as store:
        await store.set("k", "v", ttl=5)
        assert await store.get("k") == "v"
    assert redis_live.client().get("stepup:k") == "v"


@pytest.mark.live
async def test_redis_going_away_is_store_unavailable_and_comes_back_without_a_restart(
    redis_live: RedisServer,
) -> None:
    settings = StorageSettings(url=redis_live.url, timeout=0.5, connect_timeout=0.5)
    failed: list[tuple[str, str]] = []
    async with open_store(settings, SystemClock(), on_error=lambda backend, op: failed.append((backend, op))) as store:
        await store.set("session", "alive", ttl=60)
        redis_live.stop()
        operations = {
            "get": store.get("session"),
            "set": store.set("k", "v", ttl=5),
            "add": store.add("k", "v", ttl=5),
            "replace": store.replace("k", "v", ttl=5),
            "pop": store.pop("session"),
            "delete": store.delete("k"),
            "incr": store.incr("c", ttl=5),
            "ttl": store.ttl("session"),
            "ping": store.ping(),
        }
        for name, operation in operations.items():
            # Never None ("absent") or False ("someone else holds it"): the caller must not decide on a failure.
            with pytest.raises(StoreUnavailable):
                await operation
            assert failed[-1] == ("redis", name)  # counted by name (stepup_bff_store_errors_total)
        redis_live.start()
        assert await store.get("session") == "alive"  # the same pool reconnects; nothing was lost or changed
        assert await store.incr("c", ttl=5) == 1


@pytest.mark.live
async def test_a_redis_timeout_is_unavailable_at_once_and_not_retried(redis_live: RedisServer) -> None:
    """Retries are for connection failures only: a command that timed out may still run, and running it again
    (an INCR, a GETDEL) would count twice or hand out a grant twice."""
    settings = StorageSettings(url=redis_live.url, timeout=0.3)
    admin, sleeper = redis_live.client(), redis_live.client()
    admin.ping(), sleeper.ping()  # both connected before the count starts
    async with open_store(settings, SystemClock()) as store:
        await store.set("k", "v", ttl=60)  # the pool's connection, made now
        admin.config_resetstat()
        busy = threading.Thread(target=lambda: sleeper.execute_command("DEBUG", "SLEEP", "1.5"))
        busy.start()
        await anyio.sleep(0.2)  # the server is now busy
        with pytest.raises(StoreUnavailable):
            await store.incr("counter", ttl=60)
        busy.join()
        # A retry would have dropped the timed-out connection and made a new one for each further attempt.
        assert admin.info("stats")["total_connections_received"] == 0
        assert await store.get("k") == "v"  # and afterwards it simply works again


@pytest.mark.live
async def test_a_redis_store_refuses_to_start_against_nothing() -> None:
    from support.live_server import free_port

    with pytest.raises(StorageConfigError, match=r"storage\.url: cannot use Redis at 127\.0\.0\.1:\d+ \(db 0\)"):
        async with open_store(StorageSettings(url=f"redis://:hunter2@127.0.0.1:{free_port()}/0"), SystemClock()):
            pass


# -- SQLite specifics -------------------------------------------------------------------------------------------


def _worker(path: str, key: str, rounds: int, queue: multiprocessing.Queue[list[int]]) -> None:
    async def run() -> list[int]:
        store = SqliteStore(path, SystemClock())
        try:
            return [await store.incr(key, ttl=600) for _ in range(rounds)]
        finally:
            await store.close()

    queue.put(anyio.run(run))


def test_sqlite_increments_are_atomic_across_processes(tmp_path: Path) -> None:
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


async def test_a_broken_sqlite_file_is_store_unavailable_not_absent(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "broken.sqlite3"
    store = SqliteStore(path, clock)
    await store.set("k", "v", ttl=60)
    await store.close()
    for leftover in tmp_path.glob("broken.sqlite3-*"):
        leftover.unlink()
    failed: list[tuple[str, str]] = []
    store = SqliteStore(path, clock, on_error=lambda backend, op: failed.append((backend, op)))
    path.write_bytes(b"this is not a database" * 500)  # the disk under a running process goes bad
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    with pytest.raises(StoreUnavailable):
        await store.incr("c", ttl=5)
    assert failed == [("sqlite", "get"), ("sqlite", "incr")]  # each failure counted by the operation's name


async def test_ping_fails_once_the_file_is_no_longer_the_one_opened(tmp_path: Path, clock: FakeClock) -> None:
    failed: list[tuple[str, str]] = []
    path = tmp_path / "ping.sqlite3"
    store = SqliteStore(path, clock, on_error=lambda backend, op: failed.append((backend, op)))
    await store.ping()
    path.rename(tmp_path / "moved.sqlite3")  # a wiped data directory: writes would go to a file nobody keeps
    with pytest.raises(StoreUnavailable):
        await store.ping()
    assert failed == [("sqlite", "ping")]
    (tmp_path / "moved.sqlite3").rename(path)
    await store.ping()  # back where it was: ready again
    await store.close()


def test_an_unopenable_sqlite_path_names_the_setting(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "not-a-dir").write_text("a file")
    with pytest.raises(StorageConfigError, match=r"^storage\.url: cannot open the SQLite database"):
        SqliteStore(tmp_path / "not-a-dir" / "s.sqlite3", clock)
