"""Group commit on SQLite (storage/sqlite.py, SqliteDatabase): concurrent telegram inserts and activity events share
one transaction and one synced commit, every answer comes after the commit that stored its write, a failing write
fails only its own request, a failing transaction fails its whole batch and stores nothing, the unique index still
decides idempotency inside a batch, and each user's activity chain stays intact. The SQL the writer connection runs
is read through sqlite3's own trace hook."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from stepup_bff.activity.chain import event_hash, verify_chain
from stepup_bff.errors import DatabaseUnavailable
from stepup_bff.storage import ActivityEvent, SqliteDatabase, Telegram

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "records.sqlite3"


@pytest.fixture
async def database(path: Path) -> AsyncIterator[SqliteDatabase]:
    opened = SqliteDatabase(path)
    try:
        yield opened
    finally:
        await opened.close()


def trace(database: SqliteDatabase) -> list[str]:
    """Every statement the database's writer connection runs, in order (sqlite3's trace callback)."""
    statements: list[str] = []
    database._file.db.set_trace_callback(statements.append)
    return statements


def stored_ids(path: Path) -> set[str]:
    """What another connection (another process, after a crash) finds in the file."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT id FROM telegrams")}


def telegram(n: int | str, user: str = "u1") -> Telegram:
    return Telegram(f"t{n}", user, "Bob", f"Message {n}", created_at=1.0)


async def test_concurrent_telegrams_share_one_synced_commit_and_are_answered_after_it(
    database: SqliteDatabase, path: Path
) -> None:
    assert database._file.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL: COMMIT syncs to disk
    events = trace(database)

    async def send(n: int) -> tuple[Telegram, bool]:
        answer = await database.create_telegram(telegram(n), f"key-{n}")
        events.append(f"answered t{n}")
        return answer

    answers = await asyncio.gather(*(send(n) for n in range(20)))
    assert [created for _, created in answers] == [True] * 20
    commits = [index for index, event in enumerate(events) if event == "COMMIT"]
    assert len(commits) == 1, events  # twenty requests, one transaction, one sync
    assert events.count("BEGIN IMMEDIATE") == 1
    answered = [index for index, event in enumerate(events) if event.startswith("answered")]
    assert len(answered) == 20 and min(answered) > commits[0]  # nobody heard "stored" before it was
    assert stored_ids(path) == {f"t{n}" for n in range(20)}


async def test_requests_arriving_during_a_commit_go_into_the_next_batch(database: SqliteDatabase, path: Path) -> None:
    events = trace(database)
    first = asyncio.ensure_future(database.create_telegram(telegram("a"), None))
    while "BEGIN IMMEDIATE" not in events:  # the first batch is in the writer thread now
        await asyncio.sleep(0.001)
    later = await asyncio.gather(*(database.create_telegram(telegram(n), None) for n in range(5)))
    assert (await first)[1] and all(created for _, created in later)
    assert events.count("COMMIT") == 2  # the first alone, then the five that queued behind it together
    assert stored_ids(path) == {"ta", *(f"t{n}" for n in range(5))}


async def test_one_failing_insert_fails_only_its_own_request(database: SqliteDatabase, path: Path) -> None:
    await database.create_telegram(telegram("dup"), None)
    events = trace(database)
    batch = [telegram(0), telegram(1), telegram("dup"), telegram(3), telegram(4)]  # t-dup's id is taken
    answers = await asyncio.gather(*(database.create_telegram(t, None) for t in batch), return_exceptions=True)
    assert isinstance(answers[2], sqlite3.IntegrityError)  # a bug in what we sent: a 500 for that request alone
    assert [answer for i, answer in enumerate(answers) if i != 2] == [(t, True) for i, t in enumerate(batch) if i != 2]
    assert events.count("COMMIT") == 1 and "ROLLBACK TO write" in events
    assert stored_ids(path) == {"tdup", "t0", "t1", "t3", "t4"}
    stored = await database.list_telegrams("u1", limit=10)
    assert next(t for t in stored if t.id == "tdup").message == "Message dup"  # the first one, untouched


async def test_one_idempotency_key_twice_in_one_batch_stores_one_telegram(database: SqliteDatabase, path: Path) -> None:
    events = trace(database)
    first, second, other_user = await asyncio.gather(
        database.create_telegram(telegram("a"), "same"),
        database.create_telegram(telegram("b"), "same"),
        database.create_telegram(telegram("c", user="u2"), "same"),
    )
    assert events.count("COMMIT") == 1
    assert first == (telegram("a"), True)
    assert second == (telegram("a"), False)  # the original, as a retry across batches would get
    assert other_user == (telegram("c", user="u2"), True)
    assert stored_ids(path) == {"ta", "tc"}


async def test_a_failed_transaction_fails_its_whole_batch_and_stores_nothing(path: Path) -> None:
    errors: list[tuple[str, str]] = []
    database = SqliteDatabase(path, on_error=lambda backend, operation: errors.append((backend, operation)))
    try:
        database._file.lock_wait = 0.1  # how long a write waits for the lock: not the default's 5 s in a test
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock for longer than we wait
        try:
            answers = await asyncio.gather(
                *(database.create_telegram(telegram(n), None) for n in range(3)), return_exceptions=True
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all(isinstance(answer, DatabaseUnavailable) for answer in answers), answers
        assert len({id(answer) for answer in answers}) == 3  # an error of its own for each request
        assert errors == [("sqlite", "create_telegram")] * 3
        assert stored_ids(path) == set()
        # The next request starts a new batch, and the database works again without a restart.
        assert await database.create_telegram(telegram(9), None) == (telegram(9), True)
        assert stored_ids(path) == {"t9"}
    finally:
        await database.close()


async def test_a_request_that_stops_waiting_leaves_the_others_alone(database: SqliteDatabase, path: Path) -> None:
    waiting = [asyncio.ensure_future(database.create_telegram(telegram(n), None)) for n in range(3)]
    await asyncio.sleep(0)  # all three are queued
    waiting[1].cancel()  # its client went away
    answers = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(answers[1], asyncio.CancelledError)
    assert answers[0] == (telegram(0), True) and answers[2] == (telegram(2), True)
    await database.close()  # waits for the batch it was in
    assert stored_ids(path) == {"t0", "t1", "t2"}  # queued before it went away: stored, as it might have been anyway


def event_builder(user: str, kind: str) -> Callable[[int, str], ActivityEvent]:
    def build(seq: int, prev_hash: str) -> ActivityEvent:
        event = ActivityEvent(user, seq, 1000 + seq, kind, "success", "{}", None, None, prev_hash, "")
        return replace(event, hash=event_hash(event))

    return build


async def test_activity_events_and_telegrams_share_the_group_commit_and_keep_each_chain_intact(
    database: SqliteDatabase, path: Path
) -> None:
    """Telegrams and activity events of concurrent requests (sign-ins, step-ups) ride the same synced commits, and
    events of one user queued into one batch still chain one after the other."""
    events = trace(database)
    writes = [database.create_telegram(telegram(n), f"key-{n}") for n in range(10)]
    appends = [database.append_activity(user, event_builder(user, f"e{n}")) for n in range(10) for user in ("u1", "u2")]
    results = await asyncio.gather(*writes, *appends)

    assert events.count("COMMIT") == 1 and events.count("BEGIN IMMEDIATE") == 1, events
    appended = [result for result in results[10:] if isinstance(result, ActivityEvent)]
    assert sorted(event.seq for event in appended if event.user_id == "u1") == list(range(1, 11))
    chains = [chain async for chain in database.activity_chains()]
    assert [len(chain) for chain in chains] == [10, 10]
    assert all(verify_chain(chain) == [] for chain in chains)
    assert stored_ids(path) == {f"t{n}" for n in range(10)}


async def test_a_telegram_and_its_event_are_one_write_of_the_batch(database: SqliteDatabase, path: Path) -> None:
    """`activity=`: a stepped-up telegram's event is appended in the telegram's own savepoint, so it costs no second
    commit, and when it fails the telegram is rolled back with it while the rest of the batch commits."""
    events = trace(database)

    def clashing(seq: int, prev_hash: str) -> ActivityEvent:
        return replace(event_builder("u1", "clash")(seq, prev_hash), seq=1)

    await database.append_activity("u1", event_builder("u1", "first"))
    events.clear()
    results = await asyncio.gather(
        database.create_telegram(telegram(1), "k1", activity=event_builder("u1", "sent")),
        database.create_telegram(telegram(2), "k2", activity=clashing),
        database.create_telegram(telegram(3, "u2"), "k3", activity=event_builder("u2", "sent")),
        return_exceptions=True,
    )
    assert events.count("COMMIT") == 1 and events.count("SAVEPOINT write") == 3, events
    assert isinstance(results[0], tuple) and isinstance(results[2], tuple)
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert stored_ids(path) == {"t1", "t3"}
    chains = [chain async for chain in database.activity_chains()]
    assert sorted([event.kind for event in chain] for chain in chains) == [["first", "sent"], ["sent"]]
    assert all(verify_chain(chain) == [] for chain in chains)


async def test_a_failing_activity_event_fails_only_its_own_request(database: SqliteDatabase) -> None:
    def clashing(seq: int, prev_hash: str) -> ActivityEvent:
        # A seq that is already taken: the primary key refuses it inside its savepoint.
        return replace(event_builder("u1", "clash")(seq, prev_hash), seq=1)

    await database.append_activity("u1", event_builder("u1", "first"))
    results = await asyncio.gather(
        database.create_telegram(telegram(1), None),
        database.append_activity("u1", clashing),
        database.append_activity("u1", event_builder("u1", "after")),
        return_exceptions=True,
    )

    assert isinstance(results[0], tuple) and results[0][1] is True
    assert isinstance(results[1], sqlite3.IntegrityError)  # our own mistake stays one (a 500), not an outage
    assert isinstance(results[2], ActivityEvent) and results[2].seq == 2
    chains = [chain async for chain in database.activity_chains()]
    assert [event.kind for event in chains[0]] == ["first", "after"] and verify_chain(chains[0]) == []
