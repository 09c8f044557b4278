"""The durable records (TelegramStore), held against SQLite and a real PostgreSQL alike: idempotency decided by the
unique index even between separate connection pools, the versioned migrations, and failing closed
(DatabaseUnavailable) when the database goes away, then recovering without a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import astuple, replace
from pathlib import Path

import anyio
import psycopg
import pytest

from stepup_bff.activity.chain import event_hash, verify_chain
from stepup_bff.errors import DatabaseUnavailable
from stepup_bff.settings import DatabaseSettings
from stepup_bff.storage import (
    ActivityEvent,
    Database,
    EventBuilder,
    StorageConfigError,
    Telegram,
    TelegramStore,
    open_database,
)
from stepup_bff.storage.base import as_row
from stepup_bff.storage.migrations import MIGRATIONS
from support.backends import PostgresServer
from support.live_server import free_port

pytestmark = pytest.mark.anyio

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.live)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'records.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[TelegramStore]:
    async with open_database(DatabaseSettings(url=database_url)) as opened:
        yield opened


def _applied_versions(url: str) -> list[int]:
    query = "SELECT version FROM schema_migrations ORDER BY version"
    if url.startswith("sqlite:///"):
        return [row[0] for row in sqlite3.connect(url.removeprefix("sqlite:///")).execute(query)]
    with psycopg.connect(url) as conn:
        return [int(row[0]) for row in conn.execute(query)]


async def test_telegrams_are_idempotent_per_user_and_listed_newest_first(database: TelegramStore) -> None:
    first = Telegram("t1", "u1", "Bob", "Happy birthday", created_at=1.0)
    again = Telegram("t2", "u1", "Bob", "Happy birthday", created_at=2.0)
    stored, created = await database.create_telegram(first, "key-1")
    assert created and stored == first
    stored, created = await database.create_telegram(again, "key-1")
    assert not created and stored == first
    # Another user may use the same key.
    _, created = await database.create_telegram(Telegram("t3", "u2", "Eve", "Hi", created_at=3.0), "key-1")
    assert created
    await database.create_telegram(Telegram("t4", "u1", "Carol", "Hello", created_at=4.0), None)
    await database.create_telegram(Telegram("t5", "u1", "Dan", "Same tick", created_at=4.0), None)
    assert [t.id for t in await database.list_telegrams("u1", limit=10)] == ["t5", "t4", "t1"]
    assert [t.id for t in await database.list_telegrams("u1", limit=1)] == ["t5"]
    await database.ping()


def _event(kind: str, *, clash_first: int = 0) -> EventBuilder:
    """An event of u1's; its first `clash_first` builds take seq 1 whatever the head is (as a concurrent append on
    another replica that won the seq would make them), which the unique (user_id, seq) refuses."""
    calls = 0

    def build(seq: int, prev_hash: str) -> ActivityEvent:
        nonlocal calls
        calls += 1
        event = ActivityEvent(
            "u1", 1 if calls <= clash_first else seq, 1000, kind, "success", "{}", None, None, prev_hash, ""
        )
        return replace(event, hash=event_hash(event))

    return build


async def _chain(database: Database) -> list[str]:
    chains = [chain async for chain in database.activity_chains()]
    assert all(verify_chain(chain) == [] for chain in chains)
    return [event.kind for chain in chains for event in chain]


async def test_a_telegram_and_its_activity_event_are_committed_together_or_not_at_all(database_url: str) -> None:
    """`activity=`: the event is appended in the telegram's transaction, only when the telegram is new, and when it
    cannot be appended the telegram is not stored either (a privileged action is never without its record)."""
    async with open_database(DatabaseSettings(url=database_url)) as database:
        _, created = await database.create_telegram(Telegram("t1", "u1", "Bob", "Hi", 1.0), "k1", activity=_event("a"))
        assert created and await _chain(database) == ["a"]
        # An idempotent repeat stores nothing, and records nothing: nothing new happened.
        stored, created = await database.create_telegram(
            Telegram("t2", "u1", "Bob", "Hi", 2.0), "k1", activity=_event("b")
        )
        assert not created and stored.id == "t1" and await _chain(database) == ["a"]
        # The event is refused every time: neither it nor the telegram is stored.
        with pytest.raises((DatabaseUnavailable, sqlite3.IntegrityError)):
            await database.create_telegram(
                Telegram("t3", "u1", "Bob", "Hi", 3.0), "k3", activity=_event("c", clash_first=99)
            )
        assert await database.find_telegram("u1", "k3") is None
        assert [t.id for t in await database.list_telegrams("u1", 10)] == ["t1"] and await _chain(database) == ["a"]
        # The telegram's own insert refused (an id already taken: a bug, never a race): raised as it is, not retried,
        # and the event is never built.
        builds: list[int] = []

        def counted(seq: int, prev_hash: str) -> ActivityEvent:
            builds.append(seq)
            return _event("d")(seq, prev_hash)

        with pytest.raises((psycopg.IntegrityError, sqlite3.IntegrityError)):
            await database.create_telegram(Telegram("t1", "u1", "Bob", "Hi", 5.0), "k5", activity=counted)
        assert builds == [] and await database.find_telegram("u1", "k5") is None
        # Without `activity`, a telegram is stored alone, as before.
        _, created = await database.create_telegram(Telegram("t4", "u1", "Bob", "Hi", 4.0), "k4")
        assert created and await _chain(database) == ["a"]


@pytest.mark.live
async def test_a_postgres_event_that_loses_its_seq_is_retried_with_its_telegram(postgres_url: str) -> None:
    """On PostgreSQL another replica may take the seq between the head's read and the insert: the whole transaction is
    rolled back and tried again, so the telegram is stored once, with its event, and the chain does not fork."""
    async with open_database(DatabaseSettings(url=postgres_url)) as database:
        await database.append_activity("u1", _event("first"))
        _, created = await database.create_telegram(
            Telegram("t1", "u1", "Bob", "Hi", 1.0), "k1", activity=_event("sent", clash_first=2)
        )
        assert created and await _chain(database) == ["first", "sent"]
        assert [t.id for t in await database.list_telegrams("u1", 10)] == ["t1"]


async def test_one_idempotency_key_stores_one_telegram_across_separate_pools(database_url: str) -> None:
    """Two replicas are two processes with their own connections: only the unique index can decide."""
    settings = DatabaseSettings(url=database_url)
    results: list[tuple[Telegram, bool]] = []
    async with open_database(settings) as first, open_database(settings) as second:

        async def send(database: TelegramStore, n: int) -> None:
            telegram = Telegram(f"t{n}", "u1", "Bob", "Happy birthday", created_at=float(n))
            results.append(await database.create_telegram(telegram, "same-key"))

        async with anyio.create_task_group() as group:
            for n in range(12):
                group.start_soon(send, first if n % 2 else second, n)
        listed = await first.list_telegrams("u1", limit=100)
    assert [created for _, created in results].count(True) == 1
    winner = next(telegram for telegram, created in results if created)
    assert {telegram.id for telegram, _ in results} == {winner.id}  # every answer names the one stored
    assert [t.id for t in listed] == [winner.id]


async def test_migrations_run_once_and_are_recorded(database_url: str) -> None:
    settings = DatabaseSettings(url=database_url)
    async with open_database(settings) as database:
        await database.create_telegram(Telegram("t1", "u1", "Bob", "Hi", created_at=1.0), None)
    async with open_database(settings) as database:  # a restart, or a second replica: nothing re-applied or lost
        assert [t.id for t in await database.list_telegrams("u1", limit=10)] == ["t1"]
    assert _applied_versions(database_url) == [migration.version for migration in MIGRATIONS]


async def test_replicas_starting_together_migrate_once(database_url: str) -> None:
    settings = DatabaseSettings(url=database_url)
    opened: list[bool] = []

    async def start() -> None:
        async with open_database(settings):
            opened.append(True)

    async with anyio.create_task_group() as group:
        for _ in range(4):
            group.start_soon(start)
    assert opened == [True] * 4
    assert _applied_versions(database_url) == [migration.version for migration in MIGRATIONS]


async def test_an_existing_sqlite_telegram_table_is_adopted(tmp_path: Path) -> None:
    """Releases before the migration table kept telegrams in the store's file: upgrading must not lose them."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE telegrams (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, recipient TEXT NOT NULL,"
        " message TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL, idempotency_key TEXT);"
        "INSERT INTO telegrams VALUES ('t-old', 'u1', 'Bob', 'From before', 1.0, 'queued', 'k');"
    )
    old.close()
    async with open_database(DatabaseSettings(url=f"sqlite:///{path}")) as database:
        assert [t.id for t in await database.list_telegrams("u1", limit=10)] == ["t-old"]
        _, created = await database.create_telegram(Telegram("t-new", "u1", "Bob", "From before", 2.0), "k")
        assert not created  # the old rows' keys are enforced by the new unique index


@pytest.mark.live
async def test_postgres_going_away_is_database_unavailable_and_comes_back(
    postgres_live: PostgresServer, postgres_url: str
) -> None:
    async with open_database(DatabaseSettings(url=postgres_url, timeout=1.0, connect_timeout=1.0)) as database:
        await database.create_telegram(Telegram("t1", "u1", "Bob", "Before", created_at=1.0), "k1")
        postgres_live.stop()
        try:
            with pytest.raises(DatabaseUnavailable):
                await database.create_telegram(Telegram("t2", "u1", "Bob", "During", created_at=2.0), "k2")
            with pytest.raises(DatabaseUnavailable):
                await database.list_telegrams("u1", limit=10)
            with pytest.raises(DatabaseUnavailable):
                await database.ping()
            # Long enough for the pool's background retries to back off to several seconds between attempts.
            await anyio.sleep(4)
        finally:
            postgres_live.start()
        # The same pool, and the first request after the restart succeeds: the pool gave up its backed-off retries
        # (reconnect_timeout) and this request started a fresh attempt.
        _, created = await database.create_telegram(Telegram("t3", "u1", "Bob", "After", created_at=3.0), "k3")
        assert created
        assert [t.id for t in await database.list_telegrams("u1", limit=10)] == ["t3", "t1"]


@pytest.mark.live
async def test_postgres_start_up_errors_name_the_setting_and_hide_the_password(postgres_live: PostgresServer) -> None:
    postgres_live.create_database("startup")
    cases = {
        postgres_live.url("startup", dbname="no_such_db"): 'database "no_such_db" does not exist',
        postgres_live.url("startup", password="hunter2-wrong"): "password authentication failed",
        f"postgresql://startup:hunter2-wrong@127.0.0.1:{free_port()}/startup": "Connection refused",
    }
    for url, reason in cases.items():
        with pytest.raises(StorageConfigError) as raised:
            async with open_database(DatabaseSettings(url=url, connect_timeout=2.0)):
                pass
        message = str(raised.value)
        assert message.startswith("database.url: cannot use PostgreSQL at 127.0.0.1:")
        assert reason in message
        assert "hunter2" not in message and postgres_live.passwords["startup"] not in message


def test_a_record_is_inserted_in_its_fields_order() -> None:
    """The INSERTs list their columns in the dataclasses' order (storage.base.as_row, astuple without its copies)."""
    telegram = Telegram(id="tg_1", user_id="u1", recipient="r", message="m", created_at=1.5, status="queued")
    event = ActivityEvent("u1", 2, 3, "kind", "ok", "{}", None, "agent", "0" * 64, "f" * 64)
    assert as_row(telegram) == astuple(telegram)
    assert as_row(event) == astuple(event)
