"""The Two-Factor APIs (docs/fusionauth.md §2-§4): start, send, login; expiry through the injected clock."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from fusionauth_dev import DevServer, ManualClock, identifiers, totp

from .conftest import ADMIN_KEY, APPLICATION_ID, BFF_KEY

ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
CAROL = "ca201000-0000-4000-8000-000000000003"
DAVE = "da7e0000-0000-4000-8000-000000000004"
ALICE_SECRET = "KnCWSYwMi0S4pr92R7iRpUyfDow="


def start(client: TestClient, key: str | None = BFF_KEY, **body: Any) -> Any:
    headers = {"Authorization": key} if key is not None else {}
    return client.post("/api/two-factor/start", json=body, headers=headers)


def complete(client: TestClient, two_factor_id: str, code: str, **extra: Any) -> Any:
    return client.post("/api/two-factor/login", json={"twoFactorId": two_factor_id, "code": code, **extra})


def send(client: TestClient, two_factor_id: str, method_id: str | None) -> Any:
    body = {} if method_id is None else {"methodId": method_id}
    return client.post(f"/api/two-factor/send/{two_factor_id}", json=body)


def method_id(response: Any, kind: str) -> str:
    return str(next(m["id"] for m in response.json()["methods"] if m["method"] == kind))


def test_start_requires_an_api_key(client: TestClient) -> None:
    for key in (None, "not-a-key", f"Bearer {BFF_KEY}"):
        response = start(client, key, userId=ALICE)
        assert response.status_code == 401
        assert response.content == b""


def test_start_lists_the_users_methods_without_secrets(client: TestClient) -> None:
    response = start(client, userId=ALICE, applicationId=APPLICATION_ID)
    assert response.status_code == 200
    body = response.json()
    assert body["code"].isdigit() and len(body["code"]) == 6
    assert len(body["twoFactorId"]) >= 40
    [method] = body["methods"]
    assert method["method"] == "authenticator"
    assert method["authenticator"] == {"algorithm": "HmacSHA1", "codeLength": 6, "timeStep": 30}
    assert method["name"] == "Authenticator app"
    assert "secret" not in method and len(method["id"]) == 4
    carol = start(client, userId=CAROL).json()
    assert sorted(m["method"] for m in carol["methods"]) == ["authenticator", "email"]
    assert next(m for m in carol["methods"] if m["method"] == "email")["email"] == "carol@example.com"


def test_start_omits_methods_for_a_user_without_any(client: TestClient) -> None:
    body = start(client, userId=DAVE).json()
    assert "methods" not in body
    assert set(body) == {"code", "twoFactorId"}


def test_start_by_login_id_and_unknown_users(client: TestClient) -> None:
    assert start(client, loginId="ALICE@example.com").status_code == 200
    unknown = start(client, userId="00000000-0000-4000-8000-000000000000")
    assert unknown.status_code == 404 and unknown.content == b""
    assert start(client, loginId="nobody@example.com").status_code == 404
    blank = start(client)
    assert blank.status_code == 400
    assert "loginId" in blank.json()["fieldErrors"]


def test_the_start_code_completes_the_challenge_and_echoes_state(client: TestClient) -> None:
    state = {"action": "transfer", "nested": {"amount": 10, "list": [1, "two", None]}}
    started = start(client, userId=DAVE, applicationId=APPLICATION_ID, state=state, trustChallenge="tc-1").json()
    response = complete(client, started["twoFactorId"], started["code"])
    assert response.status_code == 200
    body = response.json()
    assert body["state"] == state
    assert body["user"]["id"] == DAVE and body["user"]["email"] == "dave@example.com"
    assert "password" not in body["user"]
    assert body["token"] and body["tokenExpirationInstant"]
    assert body["trustToken"]
    # loginConfiguration.generateRefreshTokens is on for the kickstart application: native sessions refresh too.
    assert body["refreshToken"] and body["refreshTokenId"]
    cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("access_token=") and "HttpOnly" in c for c in cookies)
    # A completed challenge is spent.
    assert complete(client, started["twoFactorId"], started["code"]).status_code == 404


def test_a_supplied_start_code_is_the_code(client: TestClient) -> None:
    started = start(client, userId=DAVE, code="424242").json()
    assert started["code"] == "424242"
    assert complete(client, started["twoFactorId"], "424242").status_code == 200


def test_wrong_code_is_421_and_the_challenge_survives(client: TestClient) -> None:
    started = start(client, userId=DAVE).json()
    wrong = complete(client, started["twoFactorId"], "000000" if started["code"] != "000000" else "111111")
    assert wrong.status_code == 421
    assert wrong.content == b""
    assert complete(client, started["twoFactorId"], started["code"]).status_code == 200


def test_unknown_or_expired_two_factor_id_is_404(client: TestClient, clock: ManualClock) -> None:
    assert complete(client, "no-such-id", "123456").status_code == 404
    started = start(client, userId=DAVE).json()
    clock.advance(301)  # twoFactorIdTimeToLiveInSeconds = 300 in the kickstart
    expired = complete(client, started["twoFactorId"], started["code"])
    assert expired.status_code == 404 and expired.content == b""


def test_login_validation_errors(client: TestClient) -> None:
    response = client.post("/api/two-factor/login", json={"code": "123456"})
    assert response.status_code == 400
    assert response.json()["fieldErrors"]["twoFactorId"][0]["code"] == "[blank]twoFactorId"


def test_current_totp_code_completes_with_one_step_of_drift(client: TestClient, clock: ManualClock) -> None:
    for offset, expected in ((0, 200), (-30, 200), (30, 200), (-60, 421), (60, 421)):
        started = start(client, userId=ALICE, applicationId=APPLICATION_ID).json()
        code = totp.code_at(ALICE_SECRET, clock.now() + offset)
        response = complete(client, started["twoFactorId"], code)
        assert response.status_code == expected, (offset, response.status_code)


def test_totp_login_marks_the_method_last_used(client: TestClient, clock: ManualClock) -> None:
    started = start(client, userId=CAROL).json()
    response = complete(client, started["twoFactorId"], totp.code_at("UbNTKDMh4PY61N/nDTd9n88Qz98=", clock.now()))
    assert response.status_code == 200
    methods = {m["method"]: m for m in response.json()["user"]["twoFactor"]["methods"]}
    assert methods["authenticator"]["lastUsed"] is True
    assert methods["email"]["lastUsed"] is False
    again = start(client, userId=CAROL).json()
    assert next(m for m in again["methods"] if m["method"] == "authenticator")["lastUsed"] is True


def test_send_delivers_to_the_outbox_and_the_sent_code_completes(client: TestClient, server: DevServer) -> None:
    started = start(client, userId=BOB)
    response = send(client, started.json()["twoFactorId"], method_id(started, "email"))
    assert response.status_code == 200 and response.content == b""
    [message] = client.get("/_dev/messages").json()
    assert message["method"] == "email" and message["to"] == "bob@example.com"
    assert message["code"] == server.outbox.last_code_for("bob@example.com")
    done = complete(client, started.json()["twoFactorId"], message["code"])
    assert done.status_code == 200
    assert done.json()["user"]["twoFactor"]["methods"][0]["lastUsed"] is True


@pytest.fixture
def predictable_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated codes 111111, 222222, ... so no test depends on two random codes differing."""
    codes = iter(str(n) * 6 for n in range(1, 10))
    monkeypatch.setattr(identifiers, "one_time_code", lambda length=6: next(codes))


@pytest.mark.usefixtures("predictable_codes")
def test_each_send_invalidates_earlier_codes_including_the_start_code(client: TestClient) -> None:
    started = start(client, userId=BOB)
    two_factor_id, email = started.json()["twoFactorId"], method_id(started, "email")
    assert started.json()["code"] == "111111"
    send(client, two_factor_id, email)  # 222222
    send(client, two_factor_id, email)  # 333333
    assert [m["code"] for m in client.get("/_dev/messages").json()] == ["222222", "333333"]
    assert complete(client, two_factor_id, "111111").status_code == 421
    assert complete(client, two_factor_id, "222222").status_code == 421
    assert complete(client, two_factor_id, "333333").status_code == 200


def test_send_replaces_a_supplied_start_code(client: TestClient) -> None:
    started = start(client, userId=BOB, code="abc-not-digits")
    send(client, started.json()["twoFactorId"], method_id(started, "email"))
    assert complete(client, started.json()["twoFactorId"], "abc-not-digits").status_code == 421


def test_a_sent_code_expires_after_60_seconds(client: TestClient, server: DevServer, clock: ManualClock) -> None:
    started = start(client, userId=BOB)
    two_factor_id = started.json()["twoFactorId"]
    send(client, two_factor_id, method_id(started, "email"))
    code = server.outbox.last_code_for("bob@example.com")
    assert code is not None
    clock.advance(61)
    assert complete(client, two_factor_id, code).status_code == 421  # the twoFactorId itself lives 300 s
    send(client, two_factor_id, method_id(started, "email"))
    fresh = server.outbox.last_code_for("bob@example.com")
    assert fresh is not None
    clock.advance(59)
    assert complete(client, two_factor_id, fresh).status_code == 200


def test_send_errors(client: TestClient, clock: ManualClock) -> None:
    started = start(client, userId=CAROL)
    two_factor_id = started.json()["twoFactorId"]
    blank = send(client, two_factor_id, None)
    assert blank.status_code == 400
    assert blank.json()["fieldErrors"]["methodId"][0]["code"] == "[blank]methodId"
    unknown = send(client, two_factor_id, "ZZZZ")
    assert unknown.status_code == 400 and "methodId" in unknown.json()["fieldErrors"]
    authenticator = send(client, two_factor_id, method_id(started, "authenticator"))
    assert authenticator.status_code == 400
    assert send(client, "no-such-id", method_id(started, "email")).status_code == 404
    clock.advance(301)
    assert send(client, two_factor_id, method_id(started, "email")).status_code == 404


def test_no_jwt_means_no_token_and_no_cookies(client: TestClient) -> None:
    started = start(client, userId=DAVE, applicationId=APPLICATION_ID).json()
    response = complete(client, started["twoFactorId"], started["code"], noJWT=True)
    assert response.status_code == 200
    assert "token" not in response.json()
    assert response.json()["trustToken"]
    assert not response.headers.get_list("set-cookie")


def test_refresh_token_when_the_application_generates_them(client: TestClient) -> None:
    patch = {"application": {"loginConfiguration": {"generateRefreshTokens": True, "allowTokenRefresh": True}}}
    assert (
        client.patch(f"/api/application/{APPLICATION_ID}", json=patch, headers={"Authorization": ADMIN_KEY}).status_code
        == 200
    )
    started = start(client, userId=DAVE, applicationId=APPLICATION_ID).json()
    body = complete(client, started["twoFactorId"], started["code"]).json()
    assert body["refreshToken"] and body["refreshTokenId"]
    without_app = start(client, userId=DAVE).json()
    assert "refreshToken" not in complete(client, without_app["twoFactorId"], without_app["code"]).json()


def test_trust_computer_returns_a_trust_id(client: TestClient) -> None:
    started = start(client, userId=DAVE).json()
    response = complete(client, started["twoFactorId"], started["code"], trustComputer=True)
    assert response.json()["twoFactorTrustId"]
    assert any(c.startswith("fusionauth.trust=") for c in response.headers.get_list("set-cookie"))


def test_repeated_wrong_codes_lock_the_account(client: TestClient, clock: ManualClock) -> None:
    started = start(client, userId=DAVE).json()
    wrong = "000000" if started["code"] != "000000" else "111111"
    for _ in range(5):  # failedAuthenticationConfiguration.tooManyAttempts = 5
        assert complete(client, started["twoFactorId"], wrong).status_code == 421
    locked = complete(client, started["twoFactorId"], started["code"])
    assert locked.status_code == 409
    assert locked.json()["actions"][0]["actionId"] == "10c0a471-6c2d-4e3f-8a9b-000000000001"
    clock.advance(3 * 60 + 1)  # actionDuration 3 MINUTES
    fresh = start(client, userId=DAVE).json()
    assert complete(client, fresh["twoFactorId"], fresh["code"]).status_code == 200


def test_the_emailed_code_says_what_it_confirms_from_the_start_state(client: TestClient) -> None:
    """kickstart/email-mfa.json's template reads the Start API's state ([inferred] for FusionAuth itself): a step-up
    bound to a transaction names it, escaped in the HTML part, and one without says only the code."""
    summary = "singing telegram to <b>Bob</b> & co — “Happy birthday…”"
    state = {"challengeId": "c", "session": "s", "transaction": {"id": "tx_1", "summary": summary}}
    bound = start(client, userId=BOB, applicationId=APPLICATION_ID, state=state)
    assert send(client, bound.json()["twoFactorId"], method_id(bound, "email")).status_code == 200
    plain = start(client, userId=BOB, applicationId=APPLICATION_ID, state={"challengeId": "d"})
    assert send(client, plain.json()["twoFactorId"], method_id(plain, "email")).status_code == 200

    confirming, generic = client.get("/_dev/messages").json()
    assert confirming["subject"] == f"Confirm: {summary}"
    assert confirming["text"].startswith(f"You are confirming: {summary}\n")
    assert f"Your verification code is {confirming['code']}." in confirming["text"]
    assert (
        "<strong>singing telegram to &lt;b&gt;Bob&lt;/b&gt; &amp; co — “Happy birthday…”</strong>" in confirming["html"]
    )
    assert "<b>Bob</b>" not in confirming["html"]
    assert generic["subject"] == "Your verification code"
    assert generic["text"] == f"Your verification code is {generic['code']}. It expires in a minute."
    assert "confirming" not in generic["html"]


def test_templates_render_only_what_the_dev_server_understands() -> None:
    from fusionauth_dev.templates import TemplateError, render

    variables = {"code": "123456", "user": {"email": "bob@example.com"}}
    assert render("${user.firstName!'there'}, ${code} ${(application.name)!''}", variables) == "there, 123456 "
    for template in ("${missing}", "[#list users as u]${u}[/#list]", "${code?upper_case}", "${user}"):
        with pytest.raises(TemplateError):
            render(template, variables)
