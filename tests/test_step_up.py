"""Step-up through FusionAuth's two-factor API, guarding POST /api/telegrams (respx-mocked FusionAuth).

The machinery every unbound action shares (the time window, max_age, single_use, the limits), shown on
POST /api/telegrams with its binding turned off (support.step_up.UNBOUND). Binding itself: test_transactions.py."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
import respx
from fastapi import Depends
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, FakeClock, make_settings, replace_cookie, sign_in
from stepup_bff.app import create_app
from stepup_bff.auth.sessions import Session
from stepup_bff.clock import iso
from stepup_bff.deps import require_step_up
from stepup_bff.settings import Settings
from support.fake_fusionauth import APPLICATION_ID, OTHER_USER_ID, USER_ID, TokenFactory
from support.step_up import LOCKOUT_ACTION, lock, unbound
from support.two_factor import SMS, VALID_CODE, FakeTwoFactor

FreshWithinAMinute = Annotated[Session, Depends(require_step_up(max_age=60))]
TELEGRAM = {"recipient": "Bob", "message": "Happy birthday, sung by a baritone"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """send_telegram as an action of the time window."""
    return make_settings(tmp_path, step_up=unbound())


def post(client: TestClient, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers={**JSON_HEADERS, **headers})


@pytest.fixture
def two_factor(fusionauth: respx.MockRouter) -> FakeTwoFactor:
    return FakeTwoFactor(fusionauth)


def step_up(client: TestClient, code: str = VALID_CODE) -> httpx.Response:
    assert post(client, "/api/step-up/start").status_code == 200
    return post(client, "/api/step-up/finish", {"code": code})


# -- the challenge ------------------------------------------------------------------------------------------------


def test_not_signed_in_is_login_required(client: TestClient, two_factor: FakeTwoFactor) -> None:
    # Each route with a body it would accept: a body it would not is refused before the session is looked at.
    bodies: dict[str, dict[str, str]] = {
        "/api/telegrams": TELEGRAM,
        "/api/step-up/start": {},
        "/api/step-up/finish": {"code": "1"},
    }
    for path, body in bodies.items():
        response = post(client, path, body)
        assert response.status_code == 401
        assert response.json()["error"] == "login_required"
    assert client.get("/api/telegrams").json()["error"] == "login_required"


def test_privileged_action_without_step_up_gets_the_rfc9470_challenge(signed_in: TestClient) -> None:
    response = post(signed_in, "/api/telegrams", TELEGRAM)

    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "insufficient_user_authentication"
    assert body["max_age"] == 300
    assert body["error_description"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_user_authentication"' in challenge
    assert 'max_age="300"' in challenge
    assert signed_in.get("/api/telegrams").json() == {"telegrams": []}


def test_ordinary_things_need_no_step_up(signed_in: TestClient) -> None:
    assert signed_in.get("/api/telegrams").status_code == 200
    assert signed_in.get("/api/session").json()["step_up"] == {"active": False}


# -- full flows ---------------------------------------------------------------------------------------------------


def test_full_flow_with_an_authenticator(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, clock: FakeClock
) -> None:
    old_cookie = signed_in.cookies["stepup_session"]
    start = post(signed_in, "/api/step-up/start")

    assert start.status_code == 200
    assert start.json() == {
        "methods": [
            {"id": "AUTH", "method": "authenticator", "hint": "Phone", "last_used": True},
            {"id": "MAIL", "method": "email", "hint": "r•••@piedpiper.com", "last_used": False},
        ],
        "expires_at": iso(clock.now() + 300),
    }
    sent = json.loads(fusionauth["two_factor_start"].calls.last.request.content)
    assert sent["userId"] == USER_ID
    assert sent["applicationId"] == APPLICATION_ID
    assert set(sent["state"]) == {"challengeId", "session"}
    assert fusionauth["two_factor_start"].calls.last.request.headers["authorization"] == "test-api-key-0123456789"

    finish = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE, "method_id": "AUTH"})

    assert finish.status_code == 200
    assert finish.json() == {
        "step_up": {"active": True, "expires_at": iso(clock.now() + 300), "method": "authenticator"}
    }
    login = fusionauth["two_factor_login"].calls.last.request
    login_body = json.loads(login.content)
    assert login_body["code"] == VALID_CODE
    assert login_body["applicationId"] == APPLICATION_ID
    assert login_body["ipAddress"] == "testclient"
    assert login_body["twoFactorId"] in two_factor.secrets
    assert "authorization" not in login.headers  # an anonymous endpoint: the API key is not sent
    # A new session id (ASVS 7.2.4), and the old cookie is dead.
    assert signed_in.cookies["stepup_session"] != old_cookie
    session = signed_in.get("/api/session").json()
    assert session["step_up"] == {"active": True, "expires_at": iso(clock.now() + 300), "method": "authenticator"}

    created = post(signed_in, "/api/telegrams", TELEGRAM)
    assert created.status_code == 201
    telegram = created.json()
    assert telegram["recipient"] == "Bob" and telegram["status"] == "queued" and telegram["id"].startswith("tg_")
    assert signed_in.get("/api/telegrams").json()["telegrams"] == [telegram]

    replace_cookie(signed_in, "stepup_session", old_cookie)
    assert signed_in.get("/api/session").json()["authenticated"] is False


def test_full_flow_with_an_emailed_code(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    assert post(signed_in, "/api/step-up/start").status_code == 200

    send = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})

    assert send.status_code == 200
    assert send.json() == {"sent_to": "r•••@piedpiper.com", "retry_after": 30, "sends_remaining": 2}
    request = fusionauth["two_factor_send"].calls.last.request
    assert json.loads(request.content) == {"methodId": "MAIL"}
    assert "authorization" not in request.headers
    assert two_factor.sent[0][0] in two_factor.issued

    finish = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert finish.status_code == 200
    assert finish.json()["step_up"]["method"] == "email"
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 201


def test_sms_hint_is_masked(signed_in: TestClient, fusionauth: respx.MockRouter) -> None:
    FakeTwoFactor(fusionauth, methods=[SMS])
    methods = post(signed_in, "/api/step-up/start").json()["methods"]
    assert methods == [{"id": "TEXT", "method": "sms", "hint": "•••1212", "last_used": False}]


def test_secrets_never_reach_the_browser_or_the_logs(
    signed_in: TestClient, two_factor: FakeTwoFactor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses = [post(signed_in, "/api/step-up/start")]
    responses.append(post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}))
    responses.append(post(signed_in, "/api/step-up/finish", {"code": "987654"}))
    responses.append(post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}))
    responses.append(signed_in.get("/api/session"))
    responses.append(post(signed_in, "/api/telegrams", TELEGRAM))

    assert two_factor.start_codes and two_factor.secrets
    for response in responses:
        visible = response.text + json.dumps(response.headers.multi_items())
        for secret in [*two_factor.secrets, VALID_CODE, "987654", "leak", "fusionauth.sso", "refresh-", "trust-"]:
            assert secret not in visible, f"{secret} leaked in {response.request.url.path}"
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for secret in [*two_factor.secrets, VALID_CODE, "987654"]:
        assert secret not in logged


def test_user_id_comes_from_the_session_not_the_client(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    # A client naming a user is refused outright (start takes no input), before FusionAuth hears of it...
    response = post(signed_in, "/api/step-up/start", {"userId": OTHER_USER_ID, "loginId": "bob@example.com"})
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert not fusionauth["two_factor_start"].called
    # ...and the challenge FusionAuth is asked for is always the session's user's.
    assert post(signed_in, "/api/step-up/start").status_code == 200
    sent = json.loads(fusionauth["two_factor_start"].calls.last.request.content)
    assert sent["userId"] == USER_ID and "loginId" not in sent


def test_answer_for_another_user_is_refused(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    two_factor.user_id = OTHER_USER_ID
    response = step_up(signed_in)
    assert response.status_code == 502
    assert signed_in.get("/api/session").json()["step_up"]["active"] is False
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 401


def test_answer_for_another_challenge_is_refused(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    assert post(signed_in, "/api/step-up/start").status_code == 200
    for two_factor_id in two_factor.issued:
        two_factor.issued[two_factor_id] = {"challengeId": "someone-elses", "session": "x"}
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 502
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 401


def test_user_without_a_second_factor(signed_in: TestClient, fusionauth: respx.MockRouter) -> None:
    FakeTwoFactor(fusionauth, methods=[])
    response = post(signed_in, "/api/step-up/start")
    assert response.status_code == 409
    assert response.json()["error"] == "no_second_factor"
    assert "second factor" in response.json()["error_description"]


def test_starting_again_replaces_the_previous_challenge(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    first_id = list(two_factor.issued)[0]
    post(signed_in, "/api/step-up/start")
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
    # The second twoFactorId was used; the first was left alone.
    assert first_id in two_factor.issued


def test_finish_or_send_without_a_challenge(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).json()["error"] == "no_challenge"
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).json()["error"] == "no_challenge"


def test_cancel_discards_the_challenge(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    assert post(signed_in, "/api/step-up/cancel").status_code == 204
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).json()["error"] == "no_challenge"


@pytest.mark.parametrize("method_id", ["AUTH", "NOPE", ""])
def test_send_refuses_authenticator_and_unknown_methods(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, method_id: str
) -> None:
    post(signed_in, "/api/step-up/start")
    response = post(signed_in, "/api/step-up/send", {"method_id": method_id})
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_method", "invalid_request")
    assert not fusionauth["two_factor_send"].called


@pytest.mark.parametrize("body", [{}, {"code": ""}, {"code": "12 34"}, {"code": "x" * 65}, {"code": 123456}])
def test_malformed_codes_are_refused_without_echo(signed_in: TestClient, two_factor: FakeTwoFactor, body: Any) -> None:
    post(signed_in, "/api/step-up/start")
    response = post(signed_in, "/api/step-up/finish", body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    if body.get("code"):
        assert str(body["code"]) not in response.text


# -- wrong codes and limits ---------------------------------------------------------------------------------------


def test_wrong_code_countdown_then_the_challenge_is_discarded(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    remaining = []
    for _ in range(4):
        response = post(signed_in, "/api/step-up/finish", {"code": "987654"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_code"
        remaining.append(response.json()["attempts_remaining"])
    assert remaining == [3, 2, 1, 0]
    # Even the right code is useless now: the challenge is gone and must be restarted.
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).json()["error"] == "no_challenge"
    assert step_up(signed_in).status_code == 200


def test_right_code_after_a_wrong_one(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    assert post(signed_in, "/api/step-up/finish", {"code": "987654"}).json()["attempts_remaining"] == 3
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200


def test_per_user_limit_blocks_across_fresh_challenges(
    signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock
) -> None:
    failures = 0
    while failures < 10:
        post(signed_in, "/api/step-up/start")
        for _ in range(4 if failures < 8 else 2):  # fresh challenges never reset the per-user count
            response = post(signed_in, "/api/step-up/finish", {"code": "987654"})
            failures += 1
    assert failures == 10
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "step_up_blocked"
    assert 0 < body["retry_after"] <= 900
    assert response.headers["retry-after"] == str(body["retry_after"])

    # BLOCKED: start, send and finish all refuse, even with the right code, until the window passes.
    blocked = post(signed_in, "/api/step-up/start")
    assert blocked.status_code == 429 and blocked.json()["error"] == "step_up_blocked"
    clock.advance(body["retry_after"])
    assert step_up(signed_in).status_code == 200


def test_limits_are_configurable(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    client = app_factory(make_settings(tmp_path, step_up=unbound(max_attempts=2, max_failures=3)))
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    post(client, "/api/step-up/start")
    assert post(client, "/api/step-up/finish", {"code": "0"}).json()["attempts_remaining"] == 1
    assert post(client, "/api/step-up/finish", {"code": "0"}).json()["attempts_remaining"] == 0
    post(client, "/api/step-up/start")
    assert post(client, "/api/step-up/finish", {"code": "0"}).json()["error"] == "step_up_blocked"


def test_replaying_an_older_cookie_restores_no_attempts(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    older = signed_in.cookies["stepup_session"]
    post(signed_in, "/api/step-up/start")
    for _ in range(2):
        post(signed_in, "/api/step-up/finish", {"code": "987654"})
    replace_cookie(signed_in, "stepup_session", older)
    assert post(signed_in, "/api/step-up/finish", {"code": "987654"}).json()["attempts_remaining"] == 1


def test_signing_in_again_does_not_reset_the_per_user_count(
    signed_in: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, two_factor: FakeTwoFactor
) -> None:
    for _ in range(2):
        post(signed_in, "/api/step-up/start")
        for _ in range(4):
            post(signed_in, "/api/step-up/finish", {"code": "987654"})
    sign_in(signed_in, fusionauth, tokens)  # a brand-new session
    post(signed_in, "/api/step-up/start")
    post(signed_in, "/api/step-up/finish", {"code": "987654"})
    assert post(signed_in, "/api/step-up/finish", {"code": "987654"}).json()["error"] == "step_up_blocked"


def test_resend_cooldown_and_send_limit(signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock) -> None:
    post(signed_in, "/api/step-up/start")
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).status_code == 200
    clock.advance(10)
    too_soon = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})
    assert too_soon.status_code == 429
    assert too_soon.json()["error"] == "resend_too_soon"
    assert too_soon.json()["retry_after"] == 20
    assert too_soon.headers["retry-after"] == "20"
    clock.advance(20)
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).json()["sends_remaining"] == 1
    clock.advance(30)
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).json()["sends_remaining"] == 0
    clock.advance(30)
    limit = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})
    assert limit.status_code == 429 and limit.json()["error"] == "too_many_sends"
    assert len(two_factor.sent) == 3


# -- expiry -------------------------------------------------------------------------------------------------------


def test_expired_challenge_at_fusionauth_is_410(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    two_factor.issued.clear()  # FusionAuth forgot the twoFactorId (its 5 minutes passed)
    response = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert response.status_code == 410
    assert response.json()["error"] == "challenge_expired"
    send = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})
    assert send.status_code == 410


def test_expired_challenge_by_our_clock_is_410(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, clock: FakeClock
) -> None:
    post(signed_in, "/api/step-up/start")
    clock.advance(300)
    response = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert response.status_code == 410 and response.json()["error"] == "challenge_expired"
    assert not fusionauth["two_factor_login"].called


def test_step_up_expires_at_max_age(signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock) -> None:
    assert step_up(signed_in).status_code == 200
    clock.advance(299)
    assert signed_in.get("/api/session").json()["step_up"]["active"] is True
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 201
    clock.advance(1)
    assert signed_in.get("/api/session").json()["step_up"]["active"] is False
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 401


def test_a_route_can_demand_its_own_max_age(
    settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    app = create_app(settings, clock=clock)

    @app.post("/api/strict")
    async def strict(session: FreshWithinAMinute) -> dict[str, str]:
        return {"ok": session.user.id}

    app.router.routes.insert(0, app.router.routes.pop())  # before the SPA mount
    FakeTwoFactor(fusionauth)
    with TestClient(app, base_url="http://localhost:9000", follow_redirects=False) as client:
        sign_in(client, fusionauth, tokens)
        assert step_up(client).status_code == 200
        clock.advance(59)
        assert post(client, "/api/strict").status_code == 200
        clock.advance(1)
        strict_answer = post(client, "/api/strict")
        assert strict_answer.status_code == 401 and strict_answer.json()["max_age"] == 60
        assert 'max_age="60"' in strict_answer.headers["www-authenticate"]
        assert post(client, "/api/telegrams", TELEGRAM).status_code == 201  # the default 300 s still holds


def test_sign_out_ends_the_step_up(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    assert step_up(signed_in).status_code == 200
    stepped_up_cookie = signed_in.cookies["stepup_session"]
    post(signed_in, "/auth/logout")
    replace_cookie(signed_in, "stepup_session", stepped_up_cookie)
    response = post(signed_in, "/api/telegrams", TELEGRAM)
    assert response.status_code == 401 and response.json()["error"] == "login_required"


# -- concurrency --------------------------------------------------------------------------------------------------


def test_concurrent_finishes_of_one_challenge_succeed_at_most_once(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    post(signed_in, "/api/step-up/start")

    async def slow_login(request: httpx.Request) -> httpx.Response:
        import asyncio

        await asyncio.sleep(0.3)  # FusionAuth takes its time, so the finishes overlap
        return two_factor.login(request)

    fusionauth["two_factor_login"].side_effect = slow_login
    results: list[httpx.Response] = []

    def finish() -> None:
        results.append(post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}))

    threads = [threading.Thread(target=finish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(response.status_code for response in results)
    assert statuses.count(200) == 1, statuses
    assert fusionauth["two_factor_login"].call_count == 1
    assert {r.json()["error"] for r in results if r.status_code != 200} <= {"step_up_in_progress", "no_challenge"}


# -- FusionAuth failures ------------------------------------------------------------------------------------------

FAILURES = [
    (httpx.ConnectTimeout("slow"), 504, "fusionauth_timeout"),
    (httpx.ConnectError("refused"), 503, "fusionauth_unavailable"),
    (httpx.Response(500), 502, "fusionauth_error"),
    (httpx.Response(200, text="<html>"), 502, "fusionauth_error"),
]


@pytest.mark.parametrize(("effect", "status", "code"), FAILURES)
def test_fusionauth_down_at_start(
    signed_in: TestClient, fusionauth: respx.MockRouter, effect: Any, status: int, code: str
) -> None:
    fusionauth["two_factor_start"].mock(side_effect=effect) if isinstance(effect, Exception) else fusionauth[
        "two_factor_start"
    ].mock(return_value=effect)
    response = post(signed_in, "/api/step-up/start")
    assert (response.status_code, response.json()["error"]) == (status, code)


@pytest.mark.parametrize(("effect", "status", "code"), FAILURES)
def test_fusionauth_down_at_send(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, effect: Any, status: int, code: str
) -> None:
    post(signed_in, "/api/step-up/start")
    route = fusionauth["two_factor_send"]
    route.side_effect = effect if isinstance(effect, Exception) else (lambda request, two_factor_id: effect)
    response = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})
    assert (response.status_code, response.json()["error"]) == (status, code)
    # Nothing was sent, so no cooldown applies.
    route.side_effect = two_factor.send
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).status_code == 200


@pytest.mark.parametrize(("effect", "status", "code"), FAILURES)
def test_fusionauth_down_at_finish_leaves_no_flag(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, effect: Any, status: int, code: str
) -> None:
    post(signed_in, "/api/step-up/start")
    fusionauth["two_factor_login"].side_effect = effect if isinstance(effect, Exception) else (lambda request: effect)
    response = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert signed_in.get("/api/session").json()["step_up"]["active"] is False
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 401
    # The challenge survives a transient failure and no attempt was counted.
    fusionauth["two_factor_login"].side_effect = two_factor.login
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200


@pytest.mark.parametrize(
    ("status", "error", "http"),
    [
        (409, "login_prevented", 403),
        (410, "account_expired", 403),
        (423, "account_locked", 403),
        (400, "step_up_rejected", 403),
        (202, "fusionauth_error", 502),
        (203, "fusionauth_error", 502),
    ],
)
def test_fusionauth_refusals_at_finish_map_to_clear_codes(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, status: int, error: str, http: int
) -> None:
    post(signed_in, "/api/step-up/start")
    fusionauth["two_factor_login"].side_effect = lambda request: httpx.Response(status, json={"actions": []})
    response = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert (response.status_code, response.json()["error"]) == (http, error)
    assert post(signed_in, "/api/telegrams", TELEGRAM).status_code == 401


# -- FusionAuth's locks: with an end (temporary) or without ---------------------------------------------------------


def refuse_with(fusionauth: respx.MockRouter, step: str, status: int, body: Any) -> None:
    route = {"start": "two_factor_start", "send": "two_factor_send", "finish": "two_factor_login"}[step]
    fusionauth[route].side_effect = lambda request, **path: (
        httpx.Response(status, json=body) if body is not None else httpx.Response(status)
    )


def take_step(client: TestClient, step: str) -> httpx.Response:
    if step == "start":
        return post(client, "/api/step-up/start")
    if step == "send":
        return post(client, "/api/step-up/send", {"method_id": "MAIL"})
    return post(client, "/api/step-up/finish", {"code": VALID_CODE})


@pytest.mark.parametrize("step", ["start", "send", "finish"])
def test_a_fusionauth_lock_that_ends_is_temporary_and_says_until_when(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, clock: FakeClock, step: str
) -> None:
    if step != "start":
        assert post(signed_in, "/api/step-up/start").status_code == 200
    refuse_with(fusionauth, step, 409, lock(clock, 180))

    response = take_step(signed_in, step)

    assert (response.status_code, response.json()["error"]) == (429, "temporarily_locked")
    assert response.json()["retry_after"] == 180 and response.headers["Retry-After"] == "180"
    assert response.json()["locked_until"] == iso(clock.now() + 180)
    events = signed_in.get("/api/activity").json()["events"]
    assert (events[0]["kind"], events[0]["reason"], events[0]["retry_after"]) == (
        "step_up_blocked",
        "account_locked",
        180,
    )
    # No wrong code was counted, and once the lock has ended the same step goes through.
    clock.advance(181)
    fusionauth["two_factor_start"].side_effect = two_factor.start
    fusionauth["two_factor_send"].side_effect = two_factor.send
    fusionauth["two_factor_login"].side_effect = two_factor.login
    assert take_step(signed_in, step).status_code == 200


def test_the_lock_ends_when_its_last_action_does(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, clock: FakeClock
) -> None:
    post(signed_in, "/api/step-up/start")
    refuse_with(fusionauth, "finish", 409, lock(clock, 60, 240))
    assert take_step(signed_in, "finish").json()["retry_after"] == 240
    # FusionAuth's clock a little behind ours: it still says locked, so we say "in a moment", never "0 s ago".
    refuse_with(fusionauth, "finish", 409, lock(clock, -5))
    body = take_step(signed_in, "finish").json()
    assert (body["error"], body["retry_after"]) == ("temporarily_locked", 1)
    # FusionAuth's OpenAPI document writes its example expiry as a string of digits.
    refuse_with(fusionauth, "finish", 409, {"actions": [{"expiry": str(int((clock.now() + 90) * 1000))}]})
    assert take_step(signed_in, "finish").json()["retry_after"] == 90


YEAR = 365 * 24 * 3600.0


@pytest.mark.parametrize(
    "body",
    [
        None,  # [inferred] a 409 with no body: nothing says the lock ends
        {},
        {"actions": []},
        {"actions": [{"actionId": LOCKOUT_ACTION, "name": "Suspended"}]},  # an action without an end
        "one of them has no end",
        {"actions": [{"expiry": "soon"}]},
        {"actions": [{"expiry": True}]},
        {"actions": [{"expiry": -1}]},
        {"actions": [{"expiry": 10**20}]},  # beyond any date we could state
        {"actions": [{"expiry": "²"}]},  # a digit to str.isdigit(), not to int()
        {"actions": [{"expiry": "9" * 5000}]},  # past int()'s digit limit
        {"actions": [{"expiry": 1}]},  # ended in 1970, yet FusionAuth still refuses
        {"actions": [{"expiry": 1_700_000_000}]},  # seconds where milliseconds belong: January 1970
        "ended ten minutes ago",
        {"actions": "locked"},
        {"actions": ["locked"]},
        ["locked"],
        "longer than a year",
    ],
)
def test_a_fusionauth_lock_without_an_end_stays_login_prevented(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor, clock: FakeClock, body: Any
) -> None:
    if body == "one of them has no end":
        body = {"actions": [*lock(clock, 180)["actions"], {"actionId": "other", "name": "Suspended"}]}
    elif body == "longer than a year":
        body = lock(clock, 2 * YEAR)
    elif body == "ended ten minutes ago":
        body = lock(clock, -600)
    post(signed_in, "/api/step-up/start")
    refuse_with(fusionauth, "finish", 409, body)

    response = take_step(signed_in, "finish")

    assert (response.status_code, response.json()["error"]) == (403, "login_prevented")
    assert "retry_after" not in response.json() and "Retry-After" not in response.headers
    assert "support" in response.json()["error_description"]


def test_start_for_a_user_fusionauth_no_longer_knows(signed_in: TestClient, fusionauth: respx.MockRouter) -> None:
    fusionauth["two_factor_start"].respond(404)
    response = post(signed_in, "/api/step-up/start")
    assert (response.status_code, response.json()["error"]) == (403, "account_not_found")


def test_start_with_a_rejected_api_key(
    signed_in: TestClient, fusionauth: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    fusionauth["two_factor_start"].respond(401)
    response = post(signed_in, "/api/step-up/start")
    assert (response.status_code, response.json()["error"]) == (502, "fusionauth_error")
    # The operator is told which endpoint the key lacks, once; the person gets no detail.
    refused = [r.getMessage() for r in caplog.records if "refused the API key" in r.getMessage()]
    assert refused == ["FusionAuth refused the API key for POST /api/two-factor/start (401); check fusionauth.api_key"]


# -- telegrams ----------------------------------------------------------------------------------------------------


def test_idempotent_telegram_creation(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    step_up(signed_in)
    first = post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k-1"})
    again = post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json() == first.json()
    changed = post(
        signed_in, "/api/telegrams", {"recipient": "Other", "message": "Other"}, **{"Idempotency-Key": "k-1"}
    )
    assert changed.status_code == 422 and changed.json()["error"] == "idempotency_key_reused"
    other = post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    listed = signed_in.get("/api/telegrams").json()["telegrams"]
    assert [t["id"] for t in listed] == [other.json()["id"], first.json()["id"]]  # newest first


def test_telegrams_belong_to_their_user(
    signed_in: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, two_factor: FakeTwoFactor
) -> None:
    step_up(signed_in)
    post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "shared"})
    sign_in(signed_in, fusionauth, tokens, sub=OTHER_USER_ID)
    two_factor.user_id = OTHER_USER_ID
    assert signed_in.get("/api/telegrams").json() == {"telegrams": []}
    step_up(signed_in)
    assert post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "shared"}).status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"recipient": "", "message": "x"},
        {"recipient": "x" * 101, "message": "x"},
        {"recipient": "Bob", "message": "x" * 501},
        {"recipient": "Bob"},
        {"recipient": "Bob", "message": "hi", "extra": 1},
    ],
)
def test_telegram_validation(signed_in: TestClient, two_factor: FakeTwoFactor, body: dict[str, Any]) -> None:
    step_up(signed_in)
    response = post(signed_in, "/api/telegrams", body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_accepted_telegrams_survive_a_restart(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    settings = make_settings(tmp_path, step_up=unbound())
    client = app_factory(settings)
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    step_up(client)
    created = post(client, "/api/telegrams", TELEGRAM).json()
    client.__exit__(None, None, None)  # the process stops

    restarted = app_factory(settings)
    restarted.cookies = client.cookies
    assert restarted.get("/api/telegrams").json()["telegrams"] == [created]


# -- single-use mode ----------------------------------------------------------------------------------------------


@pytest.fixture
def single_use(tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory) -> TestClient:
    """Signed in to a BFF with step_up.single_use = true."""
    client: TestClient = app_factory(make_settings(tmp_path, step_up=unbound(single_use=True)))
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    return client


def test_single_use_step_up_authorizes_exactly_one_request(single_use: TestClient) -> None:
    client = single_use
    assert step_up(client).status_code == 200
    assert client.get("/api/session").json()["step_up"]["active"] is True
    stepped_up_cookie = client.cookies["stepup_session"]

    assert post(client, "/api/telegrams", TELEGRAM).status_code == 201
    assert client.get("/api/session").json()["step_up"]["active"] is False
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 401
    # Replaying the stepped-up cookie does not bring the grant back.
    replace_cookie(client, "stepup_session", stepped_up_cookie)
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 401
    assert step_up(client).status_code == 200
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 201


def test_single_use_grant_is_consumed_once_under_concurrency(single_use: TestClient) -> None:
    client = single_use
    step_up(client)
    results: list[int] = []

    def send() -> None:
        results.append(post(client, "/api/telegrams", TELEGRAM).status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201, 401, 401, 401, 401, 401]


def test_single_use_grant_survives_a_request_refused_for_its_input(single_use: TestClient) -> None:
    step_up(single_use)
    # FastAPI runs the guard before it rejects the body; the route never ran, so the grant is given back.
    invalid = post(single_use, "/api/telegrams", {"recipient": "", "message": "x"})
    assert invalid.status_code == 400 and invalid.json()["error"] == "invalid_request"
    assert single_use.get("/api/session").json()["step_up"]["active"] is True
    assert post(single_use, "/api/telegrams", TELEGRAM).status_code == 201
    assert post(single_use, "/api/telegrams", TELEGRAM).status_code == 401


def test_starts_are_capped_per_user(signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock) -> None:
    for _ in range(10):
        assert post(signed_in, "/api/step-up/start").status_code == 200
    capped = post(signed_in, "/api/step-up/start")
    assert capped.status_code == 429 and capped.json()["error"] == "too_many_starts"
    assert 0 < capped.json()["retry_after"] <= 900
    assert len(two_factor.issued) == 10  # the eleventh never reached FusionAuth
    clock.advance(900)
    assert post(signed_in, "/api/step-up/start").status_code == 200


def test_resend_cooldown_survives_a_new_challenge(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    post(signed_in, "/api/step-up/start")
    assert post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).status_code == 200
    post(signed_in, "/api/step-up/start")
    again = post(signed_in, "/api/step-up/send", {"method_id": "MAIL"})
    assert again.status_code == 429 and again.json()["error"] == "resend_too_soon"
    assert len(two_factor.sent) == 1


def test_consecutive_failures_lock_step_up_until_a_success_resets_them(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    client = app_factory(
        make_settings(tmp_path, step_up=unbound(max_failures=2, failure_window=60, max_consecutive_failures=4))
    )
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)

    def fail_twice() -> httpx.Response:
        post(client, "/api/step-up/start")
        post(client, "/api/step-up/finish", {"code": "987654"})
        return post(client, "/api/step-up/finish", {"code": "987654"})

    assert fail_twice().json()["error"] == "step_up_blocked"
    clock.advance(60)
    assert step_up(client).status_code == 200  # a success clears the run
    clock.advance(60)
    fail_twice()
    clock.advance(60)
    locked = fail_twice()  # four in a row since the success
    assert (locked.status_code, locked.json()["error"]) == (403, "step_up_locked")
    clock.advance(1700)  # far past the 60 s window: unlike the window, time does not lift it
    assert post(client, "/api/step-up/start").json()["error"] == "step_up_locked"
