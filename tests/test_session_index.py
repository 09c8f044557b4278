"""The per-user index of sessions: every session of a user can be found and ended without its id (which only the
cookie holds), on SQLite and on a real Redis alike; the index stays bounded and is cleaned as sessions end.

SessionManager runs for real against a real store; the end hook records what it is given."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import FakeClock, make_settings, sign_in
from stepup_bff.auth.sessions import (
    MAX_SESSIONS_PER_USER,
    TOUCH_INTERVAL,
    EndedSession,
    Session,
    SessionManager,
    Tokens,
    User,
)
from stepup_bff.errors import LoginRequired
from stepup_bff.ops.metrics import SessionEndReason
from stepup_bff.settings import Settings
from stepup_bff.storage import Store, open_store
from support.backends import RedisServer
from support.fake_fusionauth import OTHER_USER_ID, USER_ID, TokenFactory

pytestmark = pytest.mark.anyio

ALICE = User(USER_ID, "alice@example.com", "Alice")
BOB = User(OTHER_USER_ID, "bob@example.com", "Bob")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Manager:
    sessions: SessionManager
    store: Store
    clock: FakeClock
    ended: list[tuple[EndedSession, SessionEndReason]] = field(default_factory=list)
    counter: int = 0

    async def sign_in(self, user: User = ALICE) -> Session:
        self.counter += 1
        return await self.sessions.create(user, Tokens(f"access-{self.counter}", "refresh", f"rtid-{self.counter}"))

    async def alive(self, session: Session) -> bool:
        cookie = _cookie(self.sessions, session)
        return await self.sessions.load(cookie) is not None


def _cookie(sessions: SessionManager, session: Session) -> str:
    """The session cookie's value, as the browser would send it back."""
    return sessions.set_cookie_header(session).split(";")[0].split("=", 1)[1]


BACKENDS = ["sqlite", pytest.param("redis", marks=pytest.mark.live)]


async def _manager(name: str, settings: Settings, clock: FakeClock, request: pytest.FixtureRequest) -> Any:
    if name == "redis":
        redis: RedisServer = request.getfixturevalue("redis_live")
        settings = settings.model_copy(update={"storage": settings.storage.model_copy(update={"url": redis.url})})
    ended: list[tuple[EndedSession, SessionEndReason]] = []

    async def on_end(session: EndedSession, reason: SessionEndReason) -> None:
        ended.append((session, reason))

    async with open_store(settings.storage, clock) as store:
        yield Manager(SessionManager(settings, store, clock, on_end=on_end), store, clock, ended)


@pytest.fixture(params=BACKENDS)
async def manager(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> AsyncIterator[Manager]:
    async for opened in _manager(request.param, make_settings(tmp_path), clock, request):
        yield opened


async def test_end_user_sessions_ends_every_session_of_the_user_but_the_one_kept(manager: Manager) -> None:
    mine = [await manager.sign_in() for _ in range(3)]
    theirs = await manager.sign_in(BOB)
    ended = await manager.sessions.end_user_sessions(USER_ID, reason="factors_changed", keep=mine[0])
    assert ended == 2
    assert [await manager.alive(session) for session in mine] == [True, False, False]
    assert await manager.alive(theirs)
    # Each through the end hook, as every session ends: its refresh token's id and the reason.
    assert sorted((e.user_id, e.refresh_token_id, reason) for e, reason in manager.ended) == [
        (USER_ID, "rtid-2", "factors_changed"),
        (USER_ID, "rtid-3", "factors_changed"),
    ]
    assert [summary.current for summary in await manager.sessions.list_sessions(mine[0])] == [True]


async def test_ending_every_session_is_safe_to_repeat_and_to_run_at_once(manager: Manager) -> None:
    for _ in range(4):
        await manager.sign_in()
    counts: list[int] = []

    async def end_all() -> None:
        counts.append(await manager.sessions.end_user_sessions(USER_ID, reason="user_deactivated"))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(end_all)
    assert sum(counts) == 4  # each session ended (and its hook ran) exactly once
    assert len(manager.ended) == 4
    assert await manager.sessions.end_user_sessions(USER_ID, reason="user_deactivated") == 0
    assert await manager.store.index_items(f"sessions:{{{USER_ID}}}") == {}


async def test_only_sessions_signed_in_before_an_event_end_when_asked(manager: Manager) -> None:
    before = await manager.sign_in()
    manager.clock.advance(10)
    after = await manager.sign_in()
    ended = await manager.sessions.end_user_sessions(
        USER_ID, reason="tokens_revoked", signed_in_before=manager.clock.now() - 5
    )
    assert ended == 1
    assert not await manager.alive(before) and await manager.alive(after)


async def test_the_index_is_cleaned_as_sessions_end(manager: Manager) -> None:
    signed_out, timed_out, live = await manager.sign_in(), await manager.sign_in(), await manager.sign_in()
    await manager.sessions.end(signed_out, reason="sign_out")
    manager.clock.advance(1799)
    assert await manager.alive(live)  # touched: its idle clock starts again
    manager.clock.advance(1)
    assert not await manager.alive(timed_out)  # noticed: ended for its idle timeout
    index = await manager.store.index_items(f"sessions:{{{USER_ID}}}")
    assert len(index) == 1
    assert [summary.current for summary in await manager.sessions.list_sessions(live)] == [True]


async def test_a_session_that_expired_unseen_is_dropped_when_the_index_is_read(manager: Manager) -> None:
    forgotten = await manager.sign_in()
    manager.clock.advance(100)
    live = await manager.sign_in()
    # Its record vanished without a request noticing (the store expired it): nothing ran the end hook.
    await manager.store.delete(f"session:{{{USER_ID}}}:" + _member(forgotten))
    listed = await manager.sessions.list_sessions(live)
    assert [summary.current for summary in listed] == [True]
    assert len(await manager.store.index_items(f"sessions:{{{USER_ID}}}")) == 1
    assert await manager.sessions.end_user_sessions(USER_ID, reason="user_deleted") == 1


async def test_the_index_is_bounded_and_a_sign_in_past_it_ends_the_least_recent(manager: Manager) -> None:
    sessions = []
    for _ in range(MAX_SESSIONS_PER_USER):
        sessions.append(await manager.sign_in())
        manager.clock.advance(1)
    newest = await manager.sign_in()
    assert not await manager.alive(sessions[0])
    assert all([await manager.alive(session) for session in sessions[1:]])
    assert await manager.alive(newest)
    assert [(e.refresh_token_id, reason) for e, reason in manager.ended] == [("rtid-1", "too_many_sessions")]
    assert len(await manager.store.index_items(f"sessions:{{{USER_ID}}}")) == MAX_SESSIONS_PER_USER


async def test_a_rotated_session_keeps_its_place_and_its_list_id(manager: Manager) -> None:
    session = await manager.sign_in()
    other = await manager.sign_in()
    (before,) = [s for s in await manager.sessions.list_sessions(session) if s.current]
    rotated = await manager.sessions.rotate(session, step_up=None)
    listed = await manager.sessions.list_sessions(rotated)
    assert [(s.id, s.current) for s in listed if s.current] == [(before.id, True)]
    assert len(listed) == 2
    assert await manager.sessions.end_user_sessions(USER_ID, reason="signed_out_elsewhere", keep=other) == 1
    assert not await manager.alive(rotated) and await manager.alive(other)


async def test_ending_one_listed_session_by_its_id_touches_no_other_user(manager: Manager) -> None:
    mine, other_of_mine = await manager.sign_in(), await manager.sign_in()
    theirs = await manager.sign_in(BOB)
    (their_id,) = [s.id for s in await manager.sessions.list_sessions(theirs)]
    assert not await manager.sessions.end_listed(mine, their_id, reason="signed_out_elsewhere")
    assert await manager.alive(theirs)
    (target,) = [s.id for s in await manager.sessions.list_sessions(mine) if not s.current]
    assert await manager.sessions.end_listed(mine, target, reason="signed_out_elsewhere")
    assert not await manager.alive(other_of_mine) and await manager.alive(mine)
    assert not await manager.sessions.end_listed(mine, target, reason="signed_out_elsewhere")  # already over


async def test_a_sign_in_written_while_every_session_is_being_ended_ends_too(manager: Manager) -> None:
    """end_user_sessions() reads the index once: a sign-in whose entry is there but whose record is not written yet is
    missed by it. It leaves word first, and the sign-in looks before and after it writes, and ends itself."""
    store = manager.store
    real_put = store.index_put
    missed: list[int] = []

    async def put_then_end_everything(*args: Any, **kwargs: Any) -> list[str]:
        evicted = await real_put(*args, **kwargs)
        store.index_put = real_put  # type: ignore[method-assign]
        missed.append(await manager.sessions.end_user_sessions(USER_ID, reason="user_deactivated"))
        return evicted

    store.index_put = put_then_end_everything  # type: ignore[method-assign]
    with pytest.raises(LoginRequired, match="ended while you signed in"):
        await manager.sign_in()
    assert missed == [0]  # the record was not there yet when it looked
    assert [(e.refresh_token_id, reason) for e, reason in manager.ended] == [("rtid-1", "user_deactivated")]
    assert await store.index_items(f"sessions:{{{USER_ID}}}") == {}


async def test_a_rotation_racing_an_end_of_every_session_ends_unless_it_was_kept(manager: Manager) -> None:
    store = manager.store
    real_put = store.index_put
    keep: list[Session | None] = [None]

    async def put_then_end_everything(*args: Any, **kwargs: Any) -> list[str]:
        evicted = await real_put(*args, **kwargs)
        store.index_put = real_put  # type: ignore[method-assign]
        await manager.sessions.end_user_sessions(USER_ID, reason="signed_out_elsewhere", keep=keep[0])
        return evicted

    session = await manager.sign_in()
    store.index_put = put_then_end_everything  # type: ignore[method-assign]
    with pytest.raises(LookupError):
        await manager.sessions.rotate(session, step_up=None)
    assert [reason for _, reason in manager.ended] == ["signed_out_elsewhere"]
    assert await store.index_items(f"sessions:{{{USER_ID}}}") == {}
    # The session that asked for the others to end (`keep`) rotates on, under its new id.
    kept = await manager.sign_in()
    keep[0] = kept
    store.index_put = put_then_end_everything  # type: ignore[method-assign]
    rotated = await manager.sessions.rotate(kept, step_up=None)
    assert await manager.alive(rotated)


def _member(session: Session) -> str:
    return hashlib.sha256(session.id.encode()).hexdigest()


# -- through the app: the end hook revokes each refresh token and the activity log records each end -------------------


def test_every_session_of_a_user_ends_through_the_app_on_sqlite(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    _end_through_the_app(app_factory, make_settings(tmp_path), fusionauth, tokens)


@pytest.mark.live
def test_every_session_of_a_user_ends_through_the_app_on_redis(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, redis_live: RedisServer
) -> None:
    _end_through_the_app(app_factory, make_settings(tmp_path, storage={"url": redis_live.url}), fusionauth, tokens)


def _end_through_the_app(
    app_factory: Any, settings: Settings, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    # Two browsers on two instances of the app sharing one store: one deployment, two replicas.
    first: TestClient = app_factory(settings)
    second: TestClient = app_factory(settings)
    for browser in (first, second):
        assert sign_in(browser, fusionauth, tokens).status_code == 303
    issued = {call.response.json()["refresh_token_id"] for call in fusionauth["token"].calls}
    services = first.app_state["services"]
    assert first.portal is not None
    ended = first.portal.call(lambda: services.sessions.end_user_sessions(USER_ID, reason="user_deactivated"))
    assert ended == 2
    for browser in (first, second):
        assert browser.get("/api/session").json()["authenticated"] is False
    revoked = {httpx.URL(str(call.request.url)).path.rsplit("/", 1)[1] for call in fusionauth["revoke"].calls}
    assert revoked == issued
    events = first.portal.call(lambda: services.activity.recent(USER_ID, None, 10))
    assert [(e.kind, e.outcome) for e in events if e.kind == "session_ended"] == [("session_ended", "revoked")] * 2


class _CountedWrites:
    """The real store, with its compare-and-set writes counted (everything else, and those writes too, go to it)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.compare_and_set_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def compare_and_set(self, *args: Any, **kwargs: Any) -> bool:
        self.compare_and_set_calls += 1
        result: bool = await self._store.compare_and_set(*args, **kwargs)
        return result


async def test_concurrent_requests_due_a_touch_write_it_once(manager: Manager, tmp_path: Path) -> None:
    """The SPA's first page asks several things at once: one of them moves the record's last-seen time, the others
    go on with the record they read, instead of each queueing a write behind the first."""
    counted = _CountedWrites(manager.store)
    sessions = SessionManager(make_settings(tmp_path), counted, manager.clock)  # type: ignore[arg-type]
    session = await sessions.create(ALICE, Tokens("access", "refresh", "rtid"))
    cookie = _cookie(sessions, session)
    manager.clock.advance(TOUCH_INTERVAL + 1)
    loaded: list[Session | None] = []

    async def load() -> None:
        loaded.append(await sessions.load(cookie))

    async with anyio.create_task_group() as group:
        for _ in range(8):
            group.start_soon(load)
    assert len(loaded) == 8 and all(one is not None for one in loaded)
    assert counted.compare_and_set_calls == 1
    # The one write moved the idle deadline: alive just before the idle timeout counted from the touch.
    manager.clock.advance(make_settings(tmp_path).session.idle_timeout - 1)
    assert await sessions.load(cookie) is not None
    assert counted.compare_and_set_calls == 2  # and that request, a minute on, touched it again


async def test_a_session_ended_on_another_replica_leaves_this_ones_memory(manager: Manager, tmp_path: Path) -> None:
    """Each process keeps the records it opened (auth/sessions._OpenedRecords), tokens and all: a session ended
    elsewhere is refused here at its next request, and its record dropped from this process's memory then."""
    here = manager.sessions
    there = SessionManager(make_settings(tmp_path), manager.store, manager.clock)
    session = await manager.sign_in()
    assert await manager.alive(session)
    assert len(here._opened._entries) == 1
    assert await there.end_user_sessions(USER_ID, reason="signed_out_elsewhere") == 1
    assert not await manager.alive(session)
    assert here._opened._entries == {}
    # Ended here, it leaves at once; rotated here, the old record's entry leaves with it.
    rotated = await here.rotate(await _loaded(manager, await manager.sign_in()), None)
    assert list(here._opened._entries) == []
    assert await manager.alive(rotated) and len(here._opened._entries) == 1
    await here.end_user_sessions(USER_ID, reason="signed_out_elsewhere")
    assert here._opened._entries == {}


async def _loaded(manager: Manager, session: Session) -> Session:
    cookie = _cookie(manager.sessions, session)
    loaded = await manager.sessions.load(cookie)
    assert loaded is not None
    return loaded
