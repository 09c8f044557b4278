"""The session follows FusionAuth through its tokens: an access token that expires is refreshed (once, across requests
and replicas), FusionAuth refusing the refresh ends the session, and FusionAuth unreachable is borne for
session.refresh_grace. All on the injectable clock: kickstart-like tokens live an hour here (TokenFactory)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import CLIENT_SECRET, FakeClock, make_settings, refresh_grant, sign_in
from stepup_bff.auth.sessions import SessionManager, Tokens, User
from stepup_bff.ops.metrics import Metrics
from stepup_bff.storage import open_store
from support.backends import RedisServer
from support.fake_fusionauth import APPLICATION_ID, OTHER_USER_ID, USER_ID, TokenFactory
from support.metrics import sample_value

COOKIE = "stepup_session"
TTL = 3600  # the access tokens' lifetime (TokenFactory)


def _session(client: TestClient) -> httpx.Response:
    response = client.get("/api/session")
    assert response.status_code == 200, response.text
    return response


def _authenticated(client: TestClient) -> bool:
    return bool(_session(client).json()["authenticated"])


def _presented(route: respx.Route, index: int = -1) -> dict[str, str]:
    request = route.calls[index].request
    return {key: values[0] for key, values in parse_qs(request.content.decode()).items()}


@pytest.fixture
def long_idle(tmp_path: Path) -> Any:
    # Long enough an idle timeout that the clock can pass an access token's life between two requests.
    return make_settings(tmp_path, session={"idle_timeout": 3 * TTL, "absolute_timeout": 12 * TTL})


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def browser(
    app_factory: Any, long_idle: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> TestClient:
    client: TestClient = app_factory(long_idle, metrics)
    assert sign_in(client, fusionauth, tokens).status_code == 303
    return client


def test_a_token_that_is_still_valid_is_not_refreshed(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    clock.advance(TTL - 31)
    assert _authenticated(browser)
    assert not fusionauth["refresh"].called


def test_the_first_request_shortly_before_expiry_refreshes_with_client_authentication(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, metrics: Metrics
) -> None:
    issued = fusionauth["token"].calls.last.response.json()
    clock.advance(TTL - 30)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 1
    presented = _presented(fusionauth["refresh"])
    assert presented == {
        "grant_type": "refresh_token",
        "refresh_token": issued["refresh_token"],
        "client_id": APPLICATION_ID,
    }
    basic = base64.b64decode(fusionauth["refresh"].calls.last.request.headers["authorization"].split()[1]).decode()
    assert basic == f"{APPLICATION_ID}:{CLIENT_SECRET}"
    # The new token is good for another hour: no refresh until it is due in turn.
    clock.advance(TTL - 31)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 1
    clock.advance(1)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 2
    assert (
        sample_value(metrics, "stepup_bff_fusionauth_request_duration_seconds_count", operation="refresh", outcome="ok")
        == 2
    )


def test_a_rotated_refresh_token_replaces_the_old_one_which_is_never_presented_again(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, tokens: TokenFactory
) -> None:
    """FusionAuth's one-time-use policy: each refresh answers with a new refresh token (and id); the spent one would
    be refused."""
    fusionauth["refresh"].mock(side_effect=refresh_grant(tokens, clock, rotate=True))
    first = fusionauth["token"].calls.last.response.json()["refresh_token"]
    for _ in range(3):
        clock.advance(TTL)
        assert _authenticated(browser)
    presented = [_presented(fusionauth["refresh"], i)["refresh_token"] for i in range(3)]
    assert presented[0] == first
    assert len(set(presented)) == 3  # a new one each time
    # Signing out revokes the refresh token the session holds now, by its new id.
    last_id = fusionauth["refresh"].calls.last.response.json()["refresh_token_id"]
    assert browser.post("/auth/logout", headers={"X-CSRF": "1"}).status_code == 200
    assert fusionauth["revoke"].calls.last.request.url.path == f"/api/jwt/refresh/{last_id}"


def test_fusionauth_refusing_the_refresh_ends_the_session_with_the_cookie_cleared(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, metrics: Metrics
) -> None:
    issued = fusionauth["token"].calls.last.response.json()
    # Revoked at FusionAuth (or the user locked, deactivated, deleted): invalid_grant.
    fusionauth["refresh"].respond(400, json={"error": "invalid_grant", "error_reason": "refresh_token_not_found"})
    clock.advance(TTL)
    response = _session(browser)
    assert response.json() == {"authenticated": False, "sign_in": ["hosted"]}
    assert any(h.startswith(f"{COOKIE}=;") and "Max-Age=0" in h for h in response.headers.get_list("set-cookie"))
    # The same end hook as a sign-out: the refresh token is revoked, the end counted and recorded.
    assert fusionauth["revoke"].calls.last.request.url.path == f"/api/jwt/refresh/{issued['refresh_token_id']}"
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="refresh_refused") == 1
    services = browser.app_state["services"]
    assert browser.portal is not None
    events = browser.portal.call(lambda: services.activity.recent(issued["userId"], None, 5))
    assert (events[0].kind, events[0].outcome, '"reason":"refresh_refused"' in events[0].detail) == (
        "session_ended",
        "revoked",
        True,
    )


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda tokens, now: tokens.access_token(sub=OTHER_USER_ID), id="another user's token"),
        pytest.param(lambda tokens, now: tokens.access_token(ttl=-3600), id="an expired token"),
        pytest.param(
            lambda tokens, now: tokens.sign(
                {"sub": "x", "iss": "http://elsewhere", "aud": APPLICATION_ID, "exp": now + 60, "iat": now}
            ),
            id="another issuer",
        ),
        pytest.param(lambda tokens, now: "not-a-jwt", id="garbage"),
    ],
)
def test_refreshed_tokens_that_do_not_verify_end_the_session_and_their_refresh_token_is_revoked(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, tokens: TokenFactory, answer: Any
) -> None:
    clock.advance(TTL)
    minted = TokenFactory(now=clock.now())
    fusionauth["refresh"].respond(
        json={"access_token": answer(minted, clock.now()), "refresh_token": "rt-new", "refresh_token_id": "rtid-new"}
    )
    assert not _authenticated(browser)
    revoked = {call.request.url.path for call in fusionauth["revoke"].calls}
    assert "/api/jwt/refresh/rtid-new" in revoked  # no session holds it
    assert len(revoked) == 2  # and the session's own, by the end hook


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(httpx.ConnectError("refused"), id="unreachable"),
        pytest.param(httpx.ReadTimeout("slow"), id="timeout"),
        pytest.param(httpx.Response(503), id="5xx"),
        pytest.param(httpx.Response(200, text="<html>"), id="garbage"),
        pytest.param(httpx.Response(401, json={"error": "invalid_client"}), id="our client secret refused"),
    ],
)
def test_fusionauth_away_is_borne_for_the_grace_then_the_session_ends(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, metrics: Metrics, failure: Any
) -> None:
    fusionauth["refresh"].mock(side_effect=[failure] * 100)
    clock.advance(TTL)
    assert _authenticated(browser)  # the first failure: ordinary requests go on
    assert fusionauth["refresh"].call_count == 1
    clock.advance(4)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 1  # retried at most every few seconds
    clock.advance(1)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 2
    clock.advance(294)
    assert _authenticated(browser)  # 299 s after the first failure
    clock.advance(1)
    assert not _authenticated(browser)  # session.refresh_grace (300 s) is over
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="refresh_outage") == 1


def test_fusionauth_back_within_the_grace_refreshes_and_the_grace_starts_over_next_time(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, tokens: TokenFactory
) -> None:
    grant = refresh_grant(tokens, clock)
    fusionauth["refresh"].mock(side_effect=[httpx.ConnectError("down"), grant, httpx.ConnectError("down"), grant])
    clock.advance(TTL)
    assert _authenticated(browser)
    clock.advance(200)
    assert _authenticated(browser)  # back: refreshed
    assert fusionauth["refresh"].call_count == 2
    clock.advance(TTL)
    assert _authenticated(browser)  # down again: a new grace, not the rest of the old one
    clock.advance(299)
    assert _authenticated(browser)
    assert fusionauth["refresh"].call_count == 4


def test_a_step_up_still_fails_closed_while_fusionauth_is_away(
    browser: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    fusionauth["refresh"].mock(side_effect=httpx.ConnectError("down"))
    fusionauth["two_factor_start"].mock(side_effect=httpx.ConnectError("down"))
    clock.advance(TTL)
    assert _authenticated(browser)
    start = browser.post("/api/step-up/start", headers={"X-CSRF": "1"}, json={})
    assert start.status_code == 503
    assert start.json()["error"] == "fusionauth_unavailable"


def test_a_session_without_a_refresh_token_is_left_to_its_timeouts(
    app_factory: Any, long_idle: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    client: TestClient = app_factory(long_idle)
    login = client.get("/auth/login")
    state = parse_qs(httpx.URL(login.headers["location"]).query.decode())
    body = tokens.token_response(nonce=state["nonce"][0])
    del body["refresh_token"], body["refresh_token_id"]
    fusionauth["token"].respond(json=body)
    assert client.get("/auth/callback", params={"code": "c", "state": state["state"][0]}).status_code == 303
    clock.advance(TTL)
    assert _authenticated(client)
    assert not fusionauth["refresh"].called


# -- single-flight --------------------------------------------------------------------------------------------------


def test_two_replicas_on_one_store_refresh_once_and_the_other_goes_on_meanwhile(
    app_factory: Any, long_idle: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    """Two app instances (two workers, or two machines) share one store; one request on each at the moment the token
    is due. The one that takes the lock refreshes; the other neither waits nor refreshes, and goes on with the state
    it read. The one-time-use policy makes a second presentation of the token fail the session, so none happens."""
    _two_replicas(app_factory, long_idle, fusionauth, tokens, clock)


@pytest.mark.live
def test_two_replicas_on_one_redis_refresh_once(
    app_factory: Any,
    long_idle: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    redis_live: RedisServer,
) -> None:
    on_redis = long_idle.model_copy(update={"storage": long_idle.storage.model_copy(update={"url": redis_live.url})})
    _two_replicas(app_factory, on_redis, fusionauth, tokens, clock)


def _two_replicas(
    app_factory: Any, long_idle: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    first: TestClient = app_factory(long_idle)
    second: TestClient = app_factory(long_idle)
    assert sign_in(first, fusionauth, tokens).status_code == 303
    second.cookies.set(COOKIE, first.cookies[COOKIE], domain="localhost.local", path="/")
    grant = refresh_grant(tokens, clock, rotate=True)
    in_refresh, release = threading.Event(), threading.Event()

    def slow_grant(request: httpx.Request) -> httpx.Response:
        in_refresh.set()
        assert release.wait(10)  # FusionAuth is slow: the other replica's request comes meanwhile
        return grant(request)

    fusionauth["refresh"].mock(side_effect=slow_grant)
    clock.advance(TTL)
    answers: list[bool] = []
    refreshing = threading.Thread(target=lambda: answers.append(_authenticated(first)))
    refreshing.start()
    assert in_refresh.wait(10)
    assert _authenticated(second)  # answered while the refresh is in flight
    release.set()
    refreshing.join(10)
    assert answers == [True]
    assert fusionauth["refresh"].call_count == 1
    # Both replicas now see the refreshed record: no second refresh, and the session lives on.
    assert _authenticated(second) and _authenticated(first)
    assert fusionauth["refresh"].call_count == 1


def test_concurrent_requests_on_one_replica_refresh_once(
    browser: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    grant = refresh_grant(tokens, clock, rotate=True)
    fusionauth["refresh"].mock(side_effect=grant)
    clock.advance(TTL)
    cookie = browser.cookies[COOKIE]
    results: list[int] = []

    def request() -> None:
        response = browser.get("/api/session", headers={"Cookie": f"{COOKIE}={cookie}"})
        results.append(response.json().get("authenticated", response.text))

    threads = [threading.Thread(target=request) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert results == [True] * 12
    assert fusionauth["refresh"].call_count == 1


# -- a touch never undoes a refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.live)])
def test_a_touch_based_on_an_older_read_never_overwrites_refreshed_tokens(
    tmp_path: Path, clock: FakeClock, backend: str, request: pytest.FixtureRequest
) -> None:
    """Request A refreshes; request B read the record before A wrote it, finds the lock taken and goes on, and its
    last-seen update lands after A's write. Written over A's, it would put back the spent refresh token (one-time-use):
    the next refresh would present it again and FusionAuth would end the session."""
    settings = make_settings(tmp_path, session={"idle_timeout": 3 * TTL, "absolute_timeout": 12 * TTL})
    if backend == "redis":
        redis: RedisServer = request.getfixturevalue("redis_live")
        settings = settings.model_copy(update={"storage": settings.storage.model_copy(update={"url": redis.url})})

    class SlowFusionAuth:
        """FusionAuth's token endpoint under the one-time-use policy, answering when told to."""

        def __init__(self) -> None:
            self.answer = anyio.Event()
            self.presented: list[str | None] = []

        async def refresh(self, user_id: str, tokens: Tokens) -> Tokens:
            self.presented.append(tokens.refresh_token)
            await self.answer.wait()
            n = len(self.presented)
            return Tokens(f"access-{n}", f"refresh-{n}", f"rtid-{n}", expires_at=clock.now() + TTL)

        async def revoke(self, refresh_token_id: str | None) -> None:
            pass

    async def scenario() -> None:
        fusionauth = SlowFusionAuth()
        async with open_store(settings.storage, clock) as store:
            sessions = SessionManager(settings, store, clock, refresher=fusionauth, refresh_lease=60)
            session = await sessions.create(
                User(USER_ID, None, "Alice"), Tokens("access-0", "refresh-0", "rtid-0", expires_at=clock.now() + TTL)
            )
            cookie = sessions.set_cookie_header(session).split(";")[0].split("=", 1)[1]
            clock.advance(TTL)  # due for refresh, and for a touch
            real_cas = store.compare_and_set
            a_wrote = anyio.Event()
            calls = 0

            async def ordered_cas(key: str, expected: str, value: str, ttl: float) -> bool:
                nonlocal calls
                calls += 1
                if calls == 1:  # B's touch: held back until A's refresh is written
                    fusionauth.answer.set()
                    await a_wrote.wait()
                    return await real_cas(key, expected, value, ttl)
                written = await real_cas(key, expected, value, ttl)
                a_wrote.set()
                return written

            store.compare_and_set = ordered_cas  # type: ignore[method-assign]
            results: dict[str, object] = {}

            async def load(name: str) -> None:
                results[name] = await sessions.load(cookie)

            async with anyio.create_task_group() as group:
                group.start_soon(load, "a")
                await anyio.sleep(0)  # A takes the lock and calls FusionAuth first
                group.start_soon(load, "b")
            assert results["a"] is not None and results["b"] is not None
            store.compare_and_set = real_cas  # type: ignore[method-assign]
            clock.advance(TTL)
            assert await sessions.load(cookie) is not None
            # Each refresh presented the refresh token the one before it issued: none was presented twice.
            assert fusionauth.presented == ["refresh-0", "refresh-1"]

    anyio.run(scenario)
