"""Security review of native sign-in (auth/native_login.py, auth/guessing.py): attacks on the guessing limits.

The client address arrives through a trusted proxy's X-Forwarded-For (server.forwarded_allow_ips; the test client's
peer is "testclient"), as it would in production.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import API_KEY, JSON_HEADERS, make_settings, start_login
from stepup_bff.settings import Settings
from support.backends import RedisServer
from support.fake_fusionauth import TokenFactory
from support.native_login import ALICE, BOB, PASSWORD, FakeLogin
from support.two_factor import VALID_CODE


@pytest.fixture
def accounts(fusionauth: respx.MockRouter, tokens: TokenFactory) -> FakeLogin:
    return FakeLogin(fusionauth, tokens, API_KEY)


@pytest.fixture
def behind_proxy(app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter) -> TestClient:
    settings = make_settings(
        tmp_path,
        login={"native": True, "max_failures_per_login_id": 100, "max_failures_per_address": 5},
        server={"forwarded_allow_ips": "testclient"},
    )
    client: TestClient = app_factory(settings)
    return client


def guess(client: TestClient, address: str, login_id: str, password: str = "wrong") -> httpx.Response:
    return client.post(
        "/auth/native/login",
        json={"login_id": login_id, "password": password},
        headers={**JSON_HEADERS, "X-Forwarded-For": address},
    )


def test_one_ipv6_subnet_shares_one_budget(
    behind_proxy: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    # Anyone with IPv6 has a /64 at least: 2^64 addresses to send each guess from. Counted per address, the
    # per-address limit would never be reached.
    for index in range(5):
        assert guess(behind_proxy, f"2001:db8:1:2::{index + 1:x}", f"user{index}@example.com").status_code == 401

    refused = guess(behind_proxy, "2001:db8:1:2:ffff:ffff:ffff:ffff", "user9@example.com")

    assert (refused.status_code, refused.json()["error"]) == (429, "too_many_attempts")
    assert fusionauth["login"].call_count == 5
    # Another /64 has its own budget, and FusionAuth still hears each browser's own address.
    assert guess(behind_proxy, "2001:db8:1:3::1", BOB.email, PASSWORD).status_code == 200
    assert json.loads(fusionauth["login"].calls.last.request.content)["ipAddress"] == "2001:db8:1:3::1"


def test_an_ipv4_client_seen_as_ipv4_mapped_ipv6_shares_its_budget(
    behind_proxy: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    # A dual-stack listener or proxy writes an IPv4 client as ::ffff:a.b.c.d; it is the same client.
    for index in range(5):
        address = "192.0.2.7" if index % 2 else "::ffff:192.0.2.7"
        assert guess(behind_proxy, address, f"user{index}@example.com").status_code == 401

    assert guess(behind_proxy, "192.0.2.7", ALICE.email).status_code == 429
    assert guess(behind_proxy, "192.0.2.8", ALICE.email).status_code == 401  # the neighbour is not


# -- the store failing after FusionAuth has issued tokens ----------------------------------------------------------
#
# FusionAuth's answer carries a refresh token that only a session record would hold, and ending a session is what
# revokes one (the end hook). If the store goes away between FusionAuth's answer and the record, no session will
# ever end: unless revoked there and then, the refresh token stays live at FusionAuth (for its whole lifetime,
# listed as one of the user's sessions), held by nobody.


def redis_settings(tmp_path: Path, redis: RedisServer, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        storage={"url": redis.url, "timeout": 0.5, "connect_timeout": 0.5},
        login={"native": True},
        **overrides,
    )


def then_stop(redis: RedisServer, answer: Callable[..., httpx.Response]) -> Callable[..., httpx.Response]:
    def side_effect(request: httpx.Request, **kwargs: str) -> httpx.Response:
        response = answer(request, **kwargs)
        redis.stop()  # between FusionAuth's answer and anything the BFF stores
        return response

    return side_effect


def revoked(fusionauth: respx.MockRouter) -> list[str]:
    return [call.request.url.path.removeprefix("/api/jwt/refresh/") for call in fusionauth["revoke"].calls]


def assert_unavailable_and_revoked(response: httpx.Response, fusionauth: respx.MockRouter, issuer: str) -> None:
    assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")
    assert "set-cookie" not in response.headers
    assert revoked(fusionauth) == [fusionauth[issuer].calls.last.response.json()["refreshTokenId"]]


def sign_in_natively(client: TestClient) -> httpx.Response:
    return client.post("/auth/native/login", json={"login_id": ALICE.email, "password": PASSWORD}, headers=JSON_HEADERS)


@pytest.mark.live
def test_password_sign_in_with_the_store_gone_revokes_what_fusionauth_issued(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, accounts: FakeLogin, redis_live: RedisServer
) -> None:
    client: TestClient = app_factory(redis_settings(tmp_path, redis_live))
    fusionauth["login"].side_effect = then_stop(redis_live, accounts.login)

    response = sign_in_natively(client)

    assert_unavailable_and_revoked(response, fusionauth, "login")


@pytest.mark.live
def test_second_factor_sign_in_with_the_store_gone_revokes_what_fusionauth_issued(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, accounts: FakeLogin, redis_live: RedisServer
) -> None:
    accounts.second_factor = True
    client: TestClient = app_factory(redis_settings(tmp_path, redis_live))
    started = sign_in_natively(client)
    assert started.status_code == 200 and started.json()["two_factor"]
    fusionauth["two_factor_login"].side_effect = then_stop(redis_live, accounts.two_factor_login)

    response = client.post("/auth/native/two-factor/finish", json={"code": VALID_CODE}, headers=JSON_HEADERS)

    assert_unavailable_and_revoked(response, fusionauth, "two_factor_login")


@pytest.mark.live
def test_hosted_sign_in_with_the_store_gone_revokes_what_fusionauth_issued(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, redis_live: RedisServer
) -> None:
    client: TestClient = app_factory(redis_settings(tmp_path, redis_live))
    login = start_login(client)
    answer = tokens.token_response(nonce=login.nonce)
    fusionauth["token"].side_effect = then_stop(redis_live, lambda request: httpx.Response(200, json=answer))

    response = client.get("/auth/callback", params={"code": "auth-code", "state": login.state})

    assert (response.status_code, response.headers["location"]) == (303, "/?error=store_unavailable")
    assert revoked(fusionauth) == [answer["refresh_token_id"]]


# -- a locked account: FusionAuth answers 423 before it looks at the password ----------------------------------------


LOCKED = "locked@example.com"


@pytest.fixture
def with_locked_account(fusionauth: respx.MockRouter, accounts: FakeLogin) -> None:
    def login(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["loginId"] == LOCKED:
            return httpx.Response(423)  # whatever the password (FusionAuth/fusionauth-issues#2524)
        return accounts.login(request)

    fusionauth["login"].side_effect = login


def test_a_locked_account_looks_like_an_unknown_one(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, with_locked_account: None
) -> None:
    client: TestClient = app_factory(make_settings(tmp_path, login={"native": True, "max_failures_per_login_id": 3}))

    def answers(login_id: str) -> list[tuple[int, bytes, list[tuple[str, str]]]]:
        """Status, body and headers (but the date and the request id) of as many guesses as the budget allows, and
        one more."""
        seen = []
        for _ in range(4):
            response = guess(client, "192.0.2.1", login_id)
            headers = [h for h in response.headers.multi_items() if h[0] not in ("date", "x-request-id")]
            seen.append((response.status_code, response.content, headers))
        return seen

    # A guesser who types an email address and any password must not learn that an account exists: not from the
    # answer (401 invalid_credentials, not 403 account_locked), nor from the limit (a 423 costs an attempt too).
    locked, unknown = answers(LOCKED), answers("nobody@example.com")

    assert locked == unknown
    assert [status for status, _, _ in locked] == [401, 401, 401, 429]
    assert fusionauth["login"].call_count == 6
