"""Native sign-in through FusionAuth's Login API (respx-mocked FusionAuth, real RS256 tokens): the status mapping, the
second factor at sign-in on the shared challenge machine, the guessing limits, login CSRF, and that nothing leaks."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import API_KEY, JSON_HEADERS, PUBLIC_URL, FakeClock, make_settings, replace_cookie, sign_in
from stepup_bff.clock import iso
from support.fake_fusionauth import APPLICATION_ID, USER_ID, TokenFactory
from support.native_login import ALICE, BOB, PASSWORD, FakeLogin
from support.step_up import UNBOUND, lock, unbound
from support.two_factor import VALID_CODE

TELEGRAM = {"recipient": "Bob", "message": "Happy birthday"}
PENDING = "stepup_sign_in"


def post(client: TestClient, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers={**JSON_HEADERS, **headers})


def login(client: TestClient, login_id: str = ALICE.email, password: str = PASSWORD) -> httpx.Response:
    return post(client, "/auth/native/login", {"login_id": login_id, "password": password})


def native_client(app_factory: Any, tmp_path: Path, **overrides: Any) -> TestClient:
    login_settings = {"native": True, **overrides.pop("login", {})}
    client: TestClient = app_factory(make_settings(tmp_path, login=login_settings, **overrides))
    return client


@pytest.fixture
def native(app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter) -> TestClient:
    """A BFF with login.native = true."""
    return native_client(app_factory, tmp_path)


@pytest.fixture
def accounts(fusionauth: respx.MockRouter, tokens: TokenFactory) -> FakeLogin:
    return FakeLogin(fusionauth, tokens, API_KEY)


@pytest.fixture
def mfa(accounts: FakeLogin) -> FakeLogin:
    """FusionAuth with a login policy that asks for the second factor."""
    accounts.second_factor = True
    return accounts


def no_session(client: TestClient, response: httpx.Response) -> None:
    assert not any("stepup_session=" in h and "Max-Age=0" not in h for h in response.headers.get_list("set-cookie"))
    assert client.get("/api/session").json()["authenticated"] is False


# -- on and off ---------------------------------------------------------------------------------------------------


def test_off_by_default_the_routes_answer_404_and_fusionauth_is_not_called(
    client: TestClient, fusionauth: respx.MockRouter
) -> None:
    for path, body in (
        ("/auth/native/login", {"login_id": ALICE.email, "password": PASSWORD}),
        ("/auth/native/two-factor/send", {"method_id": "MAIL"}),
        ("/auth/native/two-factor/finish", {"code": VALID_CODE}),
    ):
        response = post(client, path, body)
        assert (response.status_code, response.json()["error"]) == (404, "not_found"), path
    assert not fusionauth["login"].called
    assert client.get("/api/session").json() == {"authenticated": False, "sign_in": ["hosted"]}


def test_when_on_the_session_endpoint_offers_both_ways(native: TestClient) -> None:
    assert native.get("/api/session").json() == {"authenticated": False, "sign_in": ["native", "hosted"]}
    assert native.get("/auth/login").status_code == 302  # the hosted page stays


# -- signing in with a password -----------------------------------------------------------------------------------


def test_password_sign_in_keeps_the_tokens_server_side(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, clock: FakeClock
) -> None:
    response = login(native, "  Alice@Example.com ")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["authenticated"] is True
    assert body["user"] == {"id": USER_ID, "email": ALICE.email, "name": "Alice Example"}
    assert body["step_up"] == {"active": False}
    assert body["expires_at"] == iso(clock.now() + 43200)
    sent = fusionauth["login"].calls.last.request
    assert sent.headers["authorization"] == API_KEY  # the raw key (docs/fusionauth.md §1)
    assert json.loads(sent.content) == {
        "loginId": "Alice@Example.com",
        "password": PASSWORD,
        "applicationId": APPLICATION_ID,
        "ipAddress": "testclient",  # request.client, as uvicorn's trusted-proxy rules leave it
    }
    cookies = response.headers.get_list("set-cookie")
    assert [h.split("=", 1)[0] for h in cookies] == ["stepup_session"]  # FusionAuth's access_token is not relayed
    assert "HttpOnly" in cookies[0] and "SameSite=Lax" in cookies[0]
    assert native.get("/api/session").json()["user"]["email"] == ALICE.email
    # Signing out revokes the refresh token FusionAuth issued.
    post(native, "/auth/logout")
    assert fusionauth["revoke"].calls.last.request.url.path.startswith("/api/jwt/refresh/rt-")


def test_unknown_user_and_wrong_password_get_byte_identical_answers(
    native: TestClient, accounts: FakeLogin, fusionauth: respx.MockRouter
) -> None:
    wrong = login(native, ALICE.email, "not-the-password")
    unknown = login(native, "nobody@example.com", "not-the-password")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert wrong.json()["error"] == "invalid_credentials"
    assert wrong.json()["error_description"]

    def headers(response: httpx.Response) -> list[tuple[str, str]]:
        # The date and the request id differ between any two answers; everything else must not.
        return [(name, value) for name, value in response.headers.multi_items() if name not in ("date", "x-request-id")]

    assert headers(wrong) == headers(unknown)
    assert fusionauth["login"].call_count == 2
    no_session(native, wrong)


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        # 423 is not here: FusionAuth answers it before it looks at the password, so it is answered like a wrong
        # password (tests/test_security_review_native.py).
        (409, {"actions": [{"actionId": "a", "reason": "Too many failed attempts"}]}, "login_prevented"),
        (410, None, "account_expired"),
        (203, {"changePasswordId": "cp-1", "changePasswordReason": "Expired"}, "password_change_required"),
        (212, "tokens", "verification_required"),
        (213, "tokens", "verification_required"),
        (202, "tokens", "not_registered"),
    ],
)
def test_refusals_map_to_403_with_what_to_do_and_no_session(
    native: TestClient,
    fusionauth: respx.MockRouter,
    accounts: FakeLogin,
    status: int,
    body: Any,
    error: str,
) -> None:
    if body == "tokens":
        # A conditional success: FusionAuth minted tokens we will not use; the refresh token is revoked.
        fusionauth["login"].side_effect = lambda request: accounts.signed_in(ALICE, status)
    else:
        fusionauth["login"].side_effect = None
        fusionauth["login"].respond(status, json=body) if body else fusionauth["login"].respond(status)

    response = login(native)

    assert (response.status_code, response.json()["error"]) == (403, error)
    assert len(response.json()["error_description"]) > 20
    no_session(native, response)
    assert fusionauth["revoke"].called is (body == "tokens")
    assert "changePasswordId" not in response.text and "cp-1" not in response.text


@pytest.mark.parametrize(
    ("effect", "status", "code"),
    [
        (httpx.ConnectTimeout("slow"), 504, "fusionauth_timeout"),
        (httpx.ConnectError("refused"), 503, "fusionauth_unavailable"),
        (httpx.Response(500), 502, "fusionauth_error"),
        (httpx.Response(200, text="<html>"), 502, "fusionauth_error"),
        (httpx.Response(200, json={"user": {"id": USER_ID}}), 502, "fusionauth_error"),  # no token
        (httpx.Response(200, json=["not", "an", "object"]), 502, "fusionauth_error"),
        (httpx.Response(401), 502, "fusionauth_error"),  # our API key: the operator's problem
        (httpx.Response(400, json={"fieldErrors": {"loginId": [{"code": "[blank]loginId"}]}}), 502, "fusionauth_error"),
        (httpx.Response(242, json={"methods": []}), 502, "fusionauth_error"),  # 242 without a twoFactorId
    ],
)
def test_fusionauth_failures_are_no_verdict_and_cost_no_attempt(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, effect: Any, status: int, code: str
) -> None:
    client = native_client(app_factory, tmp_path, login={"max_failures_per_login_id": 1})
    if isinstance(effect, Exception):
        fusionauth["login"].mock(side_effect=effect)
    else:
        fusionauth["login"].mock(return_value=effect)
    for _ in range(3):  # above the budget of one failure: none of these was a failed guess
        response = login(client)
        assert (response.status_code, response.json()["error"]) == (status, code)
        no_session(client, response)


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "http://evil.example"},
        {"aud": "another-client"},
        {"exp": 1_000},
        {"sub": "00000000-0000-0000-0000-0000000a77ac"},  # not the user FusionAuth's answer names
    ],
)
def test_the_jwt_is_verified_like_any_other(
    native: TestClient,
    fusionauth: respx.MockRouter,
    accounts: FakeLogin,
    tokens: TokenFactory,
    claims: dict[str, Any],
) -> None:
    answer = json.loads(accounts.signed_in(ALICE).content)
    answer["token"] = tokens.sign({**jwt_claims(tokens), **claims})
    fusionauth["login"].side_effect = None
    fusionauth["login"].respond(200, json=answer)

    response = login(native)

    assert (response.status_code, response.json()["error"]) == (502, "fusionauth_error")
    no_session(native, response)
    assert fusionauth["revoke"].called  # nothing is left behind at FusionAuth


def jwt_claims(tokens: TokenFactory) -> dict[str, Any]:
    return {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": USER_ID,
        "iat": int(tokens.now),
        "exp": int(tokens.now) + 3600,
        "applicationId": APPLICATION_ID,
    }


def test_a_token_signed_by_an_unknown_key_is_refused(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, tokens: TokenFactory
) -> None:
    answer = json.loads(accounts.signed_in(ALICE).content)
    answer["token"] = TokenFactory(now=tokens.now, kid="key-2").access_token()
    fusionauth["login"].side_effect = None
    fusionauth["login"].respond(200, json=answer)
    assert login(native).status_code == 502


def test_a_native_sign_in_replaces_the_existing_session(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, tokens: TokenFactory
) -> None:
    assert sign_in(native, fusionauth, tokens).status_code == 303  # through the hosted page
    hosted_cookie = native.cookies["stepup_session"]

    assert login(native, BOB.email).status_code == 200

    assert native.get("/api/session").json()["user"]["email"] == BOB.email
    assert fusionauth["revoke"].call_count == 1  # the hosted session's refresh token
    replace_cookie(native, "stepup_session", hosted_cookie)
    assert native.get("/api/session").json()["authenticated"] is False


def test_a_failed_sign_in_leaves_the_existing_session_alone(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, tokens: TokenFactory
) -> None:
    sign_in(native, fusionauth, tokens)
    assert login(native, BOB.email, "wrong").status_code == 401
    assert native.get("/api/session").json()["user"]["id"] == USER_ID


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"login_id": "", "password": PASSWORD},
        {"login_id": "   ", "password": PASSWORD},
        {"login_id": ALICE.email, "password": ""},
        {"login_id": ALICE.email, "password": "x" * 1025},
        {"login_id": ALICE.email, "password": 12345678},
        {"login_id": ALICE.email, "password": PASSWORD, "extra": 1},
    ],
)
def test_malformed_bodies_are_refused_without_echo_or_a_call(
    native: TestClient, fusionauth: respx.MockRouter, body: dict[str, Any]
) -> None:
    response = post(native, "/auth/native/login", body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")
    assert not fusionauth["login"].called
    assert PASSWORD not in response.text and "x" * 50 not in response.text


def test_spaces_in_a_password_are_kept(native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin) -> None:
    login(native, ALICE.email, f" {PASSWORD} ")
    assert json.loads(fusionauth["login"].calls.last.request.content)["password"] == f" {PASSWORD} "


# -- login CSRF -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Origin": PUBLIC_URL}, 403),  # no X-CSRF
        ({"X-CSRF": "1", "Origin": "https://evil.example"}, 403),
        ({"X-CSRF": "1", "Sec-Fetch-Site": "cross-site"}, 403),
        ({"X-CSRF": "1", "Sec-Fetch-Site": "same-site"}, 403),
    ],
)
def test_login_csrf_is_refused_before_fusionauth_is_asked(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, headers: dict[str, str], status: int
) -> None:
    response = native.post("/auth/native/login", json={"login_id": ALICE.email, "password": PASSWORD}, headers=headers)
    assert (response.status_code, response.json()["error"]) == (status, "csrf_rejected")
    assert not fusionauth["login"].called
    no_session(native, response)


def test_an_html_form_cannot_post_credentials(native: TestClient, fusionauth: respx.MockRouter) -> None:
    response = native.post(
        "/auth/native/login", content="login_id=a&password=b", headers={"X-CSRF": "1", "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert not fusionauth["login"].called


# -- password guessing --------------------------------------------------------------------------------------------


def test_ten_failures_per_login_id_then_429_even_for_the_right_password(
    native: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin, clock: FakeClock
) -> None:
    for attempt in range(10):
        # Case and spaces do not make another login id.
        variant = [ALICE.email, ALICE.email.upper(), f" {ALICE.email} "][attempt % 3]
        assert login(native, variant, "wrong").status_code == 401
    assert fusionauth["login"].call_count == 10

    refused = login(native, ALICE.email, PASSWORD)

    assert refused.status_code == 429
    body = refused.json()
    assert body["error"] == "too_many_attempts"
    assert 0 < body["retry_after"] <= 900
    assert refused.headers["retry-after"] == str(body["retry_after"])
    assert fusionauth["login"].call_count == 10  # FusionAuth was not asked
    no_session(native, refused)
    # Another person at the same address is not locked out.
    assert login(native, BOB.email).status_code == 200
    clock.advance(body["retry_after"])
    assert login(native, ALICE.email).status_code == 200


def test_successes_do_not_count(native: TestClient, accounts: FakeLogin) -> None:
    for _ in range(9):
        assert login(native, ALICE.email, "wrong").status_code == 401
    for _ in range(5):
        assert login(native, ALICE.email).status_code == 200
    assert login(native, ALICE.email, "wrong").status_code == 401  # the tenth failure
    assert login(native, ALICE.email).status_code == 429


def test_per_address_limit_and_other_users_below_it(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    client = native_client(app_factory, tmp_path, login={"max_failures_per_login_id": 3, "max_failures_per_address": 8})
    # One account guessed at until its own budget is spent, and on: the refused guesses cost the address nothing.
    for _ in range(6):
        login(client, ALICE.email, "wrong")
    assert fusionauth["login"].call_count == 3
    assert login(client, BOB.email).status_code == 200  # 3 of the address's 8 failures are spent
    # Guesses spread over many login ids spend the address's budget.
    for index in range(5):
        assert login(client, f"user{index}@example.com", "wrong").status_code == 401
    refused = login(client, BOB.email)
    assert (refused.status_code, refused.json()["error"]) == (429, "too_many_attempts")
    assert fusionauth["login"].call_count == 3 + 1 + 5


def test_limits_hold_for_parallel_guesses(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    client = native_client(app_factory, tmp_path, login={"max_failures_per_login_id": 3})

    async def slow_login(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(0.3)  # FusionAuth hashing the password: every guess below is in flight at once
        return accounts.login(request)

    fusionauth["login"].side_effect = slow_login
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(login(client, ALICE.email, "x").status_code)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fusionauth["login"].call_count == 3, "a check made before FusionAuth answers must not let a burst through"
    assert sorted(results) == [401, 401, 401, 429, 429, 429, 429, 429]


def test_the_store_holds_hashes_not_login_ids_or_addresses(
    native: TestClient, tmp_path: Path, accounts: FakeLogin
) -> None:
    login(native, ALICE.email, "wrong")
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        keys = [row[0] for row in db.execute("SELECT key FROM kv")]
    assert any(key.startswith("stepup:signin:login-id:") for key in keys)  # storage.prefix, then the kind
    assert any(key.startswith("stepup:signin:address:") for key in keys)
    assert not any("alice" in key.lower() or "testclient" in key for key in keys)


# -- a second factor at sign-in -------------------------------------------------------------------------------------


def test_242_with_an_authenticator_signs_in_stepped_up(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, clock: FakeClock
) -> None:
    due = login(native)

    assert due.status_code == 200
    assert due.json() == {
        "authenticated": False,
        "two_factor": {
            "methods": [
                {"id": "AUTH", "method": "authenticator", "hint": "Phone", "last_used": True},
                {"id": "MAIL", "method": "email", "hint": "r•••@piedpiper.com", "last_used": False},
            ],
            "expires_at": iso(clock.now() + 300),
        },
    }
    [pending] = due.headers.get_list("set-cookie")  # the pending sign-in only: no session yet
    assert pending.startswith(f"{PENDING}=")
    assert (
        "HttpOnly" in pending and "SameSite=Strict" in pending and "Path=/auth/" in pending and "Max-Age=300" in pending
    )
    assert native.get("/api/session").json()["authenticated"] is False

    done = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE, "method_id": "AUTH"})

    assert done.status_code == 200, done.text
    body = done.json()
    assert body["authenticated"] is True and body["user"]["email"] == ALICE.email
    assert body["step_up"] == {"active": True, "expires_at": iso(clock.now() + 300), "method": "authenticator"}
    finished = json.loads(fusionauth["two_factor_login"].calls.last.request.content)
    assert finished["noJWT"] is False  # the tokens come back this time
    assert finished["applicationId"] == APPLICATION_ID and finished["ipAddress"] == "testclient"
    assert finished["twoFactorId"] in mfa.secrets
    cleared = [h for h in done.headers.get_list("set-cookie") if h.startswith(f"{PENDING}=")]
    assert cleared and "Max-Age=0" in cleared[0]
    # The second factor at sign-in counts as a fresh step-up for the time window; a telegram, bound to what it
    # sends, still asks to confirm that very telegram (native_unbound below: no second prompt where unbound).
    assert native.get("/api/session").json()["step_up"]["active"] is True
    confirm_it = post(native, "/api/telegrams", TELEGRAM)
    assert confirm_it.status_code == 401 and confirm_it.json()["transaction"]["summary"].startswith("singing telegram")
    assert not fusionauth["two_factor_start"].called


def test_the_sign_in_second_factor_covers_an_unbound_action(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, mfa: FakeLogin
) -> None:
    client = native_client(app_factory, tmp_path, step_up=UNBOUND)
    login(client)
    assert post(client, "/auth/native/two-factor/finish", {"code": VALID_CODE}).status_code == 200
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 201
    assert not fusionauth["two_factor_start"].called


def test_242_with_an_emailed_code(native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin) -> None:
    login(native, BOB.email)
    sent = post(native, "/auth/native/two-factor/send", {"method_id": "MAIL"})
    assert sent.json() == {"sent_to": "r•••@piedpiper.com", "retry_after": 30, "sends_remaining": 2}
    request = fusionauth["two_factor_send"].calls.last.request
    assert json.loads(request.content) == {"methodId": "MAIL"} and "authorization" not in request.headers
    again = post(native, "/auth/native/two-factor/send", {"method_id": "MAIL"})
    assert (again.status_code, again.json()["error"]) == (429, "resend_too_soon")
    assert post(native, "/auth/native/two-factor/send", {"method_id": "AUTH"}).json()["error"] == "invalid_method"

    done = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert done.json()["step_up"]["method"] == "email"
    assert native.get("/api/session").json()["user"]["email"] == BOB.email


def test_single_use_mode_gives_the_sign_in_one_grant(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, mfa: FakeLogin
) -> None:
    client = native_client(app_factory, tmp_path, step_up=unbound(single_use=True))
    login(client)
    post(client, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 201
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 401


def test_wrong_codes_count_down_then_the_sign_in_must_start_again(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin
) -> None:
    login(native)
    remaining = [post(native, "/auth/native/two-factor/finish", {"code": "000000"}).json() for _ in range(4)]
    assert [body["error"] for body in remaining] == ["invalid_code"] * 4
    assert [body["attempts_remaining"] for body in remaining] == [3, 2, 1, 0]
    gone = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (gone.status_code, gone.json()["error"]) == (409, "no_challenge")
    assert native.get("/api/session").json()["authenticated"] is False
    assert login(native).status_code == 200  # the password again, a new challenge
    assert post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}).status_code == 200


def test_wrong_codes_are_limited_per_login_id_across_fresh_sign_ins(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, clock: FakeClock
) -> None:
    failures = 0
    while failures < 10:
        assert login(native, ALICE.email.upper()).status_code == 200
        for _ in range(4 if failures < 8 else 2):
            response = post(native, "/auth/native/two-factor/finish", {"code": "000000"})
            failures += 1
    assert (response.status_code, response.json()["error"]) == (429, "step_up_blocked")
    calls = fusionauth["two_factor_login"].call_count
    # Even the right password now leads nowhere until the window has passed: the second factor is blocked.
    blocked = login(native)
    assert (blocked.status_code, blocked.json()["error"]) == (429, "step_up_blocked")
    assert fusionauth["two_factor_login"].call_count == calls
    clock.advance(blocked.json()["retry_after"])
    login(native)
    assert post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}).status_code == 200


def test_the_pending_sign_in_is_bound_to_its_browser_and_single_use(
    native: TestClient, app_factory: Any, fusionauth: respx.MockRouter, mfa: FakeLogin, clock: FakeClock
) -> None:
    # Without the cookie (another browser), there is nothing to finish.
    login(native)
    pending = native.cookies[PENDING]
    native.cookies.delete(PENDING)
    assert post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}).json()["error"] == "no_challenge"
    # A tampered cookie is no cookie.
    native.cookies.set(PENDING, pending[:-2] + ("AA" if not pending.endswith("AA") else "BB"), path="/auth/")
    tampered = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (tampered.status_code, tampered.json()["error"]) == (409, "no_challenge")
    assert not fusionauth["two_factor_login"].called
    # The real one works once; replayed afterwards it finds nothing.
    native.cookies.set(PENDING, pending, path="/auth/")
    assert post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}).status_code == 200
    native.cookies.set(PENDING, pending, path="/auth/")
    replay = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (replay.status_code, replay.json()["error"]) == (409, "no_challenge")


def test_a_pending_sign_in_expires(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, clock: FakeClock
) -> None:
    login(native)
    clock.advance(301)
    response = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (410, "challenge_expired")
    assert not fusionauth["two_factor_login"].called


def test_fusionauth_forgetting_the_two_factor_id_is_410(native: TestClient, mfa: FakeLogin) -> None:
    login(native)
    mfa.pending.clear()
    response = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (410, "challenge_expired")


def test_a_required_policy_without_a_method_sends_them_to_the_hosted_page(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin
) -> None:
    mfa.methods = []
    response = login(native)
    assert (response.status_code, response.json()["error"]) == (403, "second_factor_setup_required")
    assert "sign-in page" in response.json()["error_description"]
    assert PENDING not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize(("status", "error"), [(212, "verification_required"), (202, "not_registered")])
def test_a_conditional_success_after_the_second_factor_creates_no_session(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, status: int, error: str
) -> None:
    login(native)
    fusionauth["two_factor_login"].side_effect = lambda request: mfa.signed_in(ALICE, status)
    response = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (403, error)
    no_session(native, response)
    assert fusionauth["revoke"].called


@pytest.mark.parametrize(("status", "error"), [(409, "login_prevented"), (410, "account_expired")])
def test_the_account_refused_at_the_second_factor(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, status: int, error: str
) -> None:
    login(native)
    fusionauth["two_factor_login"].side_effect = lambda request: httpx.Response(status)
    response = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (403, error)
    no_session(native, response)


def test_a_lock_that_ends_says_until_when_at_the_password_and_at_the_second_factor(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, clock: FakeClock
) -> None:
    """FusionAuth's lockout (kickstart: 5 failures in 60 s, 3 minutes) answers 409 with the action and its expiry;
    one without an expiry stays 403 login_prevented (test_refusals_map_to_403_with_what_to_do_and_no_session)."""
    locked = lock(clock, 180)
    login(native)
    fusionauth["two_factor_login"].side_effect = lambda request: httpx.Response(409, json=locked)
    at_code = post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE})
    fusionauth["login"].side_effect = lambda request: httpx.Response(409, json=locked)
    at_password = login(native)
    for response in (at_code, at_password):
        assert (response.status_code, response.json()["error"]) == (429, "temporarily_locked")
        assert response.json()["retry_after"] == 180 and response.headers["Retry-After"] == "180"
        assert response.json()["locked_until"] == iso(clock.now() + 180)
        no_session(native, response)


def test_a_second_factor_sign_in_replaces_the_existing_session(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, tokens: TokenFactory
) -> None:
    sign_in(native, fusionauth, tokens)
    old = native.cookies["stepup_session"]
    login(native, BOB.email)
    assert native.get("/api/session").json()["user"]["id"] == USER_ID  # still the old one until the code is right
    assert post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}).status_code == 200
    assert native.get("/api/session").json()["user"]["email"] == BOB.email
    replace_cookie(native, "stepup_session", old)
    assert native.get("/api/session").json()["authenticated"] is False


def test_the_secure_pending_cookie_is_host_prefixed(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, mfa: FakeLogin
) -> None:
    client = native_client(app_factory, tmp_path, public_url="https://app.example.com")
    client.base_url = httpx.URL("https://app.example.com")
    response = client.post(
        "/auth/native/login",
        json={"login_id": ALICE.email, "password": PASSWORD},
        headers={"X-CSRF": "1", "Origin": "https://app.example.com"},
    )
    [cookie] = response.headers.get_list("set-cookie")
    assert cookie.startswith("__Host-stepup_sign_in=") and "Secure" in cookie and "Path=/;" in cookie


# -- nothing leaks --------------------------------------------------------------------------------------------------


def test_no_password_token_or_two_factor_id_leaks(
    native: TestClient, fusionauth: respx.MockRouter, mfa: FakeLogin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [login(native, ALICE.email, "a-wrong-password"), login(native)]
    responses.append(post(native, "/auth/native/two-factor/send", {"method_id": "MAIL"}))
    responses.append(post(native, "/auth/native/two-factor/finish", {"code": "987654"}))
    responses.append(post(native, "/auth/native/two-factor/finish", {"code": VALID_CODE}))
    mfa.second_factor = False
    responses.append(login(native, BOB.email))
    responses.append(native.get("/api/session"))
    responses.append(post(native, "/auth/logout"))

    assert len(mfa.secrets) >= 5  # the twoFactorId, and two tokens per sign-in
    secrets = [*mfa.secrets, PASSWORD, "a-wrong-password", VALID_CODE, "987654", "access_token"]
    for response in responses:
        visible = response.text + json.dumps(response.headers.multi_items())
        for secret in secrets:
            assert secret not in visible, f"{secret} leaked in {response.request.url.path}"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in [*mfa.secrets, PASSWORD, "a-wrong-password", VALID_CODE, "987654", ALICE.email, BOB.email]:
        assert secret not in logged
    # The pending cookie holds ids, not FusionAuth's twoFactorId.
    assert all(two_factor_id not in json.dumps(dict(native.cookies)) for two_factor_id in mfa.secrets)
