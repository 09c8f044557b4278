"""Native sign-in end to end: the BFF (as `stepup-bff dev` builds it, login.native on) against the dev FusionAuth
over real HTTP, configured through FusionAuth's own admin APIs as an operator would."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepup_bff.ops.logs import configure_logging
from support.dev_stack import RunningStack, running_stack

pytestmark = pytest.mark.live
CSRF = {"X-CSRF": "1"}
TENANT_ID = "d7d09513-a3f5-401c-9685-34ab6c552453"
# A JWT's header and payload: base64url JSON objects. (The session cookie's payload is one too, but no JWT follows.)
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(tmp_path) as running:
        yield running


@pytest.fixture
def browser(live: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.bff_url, timeout=10) as client:
        yield client


class Admin:
    """FusionAuth's admin APIs with kickstart's admin key."""

    def __init__(self, live: RunningStack) -> None:
        self.live = live
        self.application_id = live.stack.seed.application.id
        self.login_policy = live.login_policy

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> None:
        response = self.live.admin(method, path, body, **params)
        assert response.status_code == 200, response.text

    def user(self, email: str, *, register: bool = True, **fields: Any) -> str:
        user = {"email": email, "password": "a-long-password", **fields}
        if register:
            registration = {"applicationId": self.application_id}
            response = self.live.admin("POST", "/api/user/registration", {"user": user, "registration": registration})
        else:
            response = self.live.admin("POST", "/api/user", {"user": user})
        assert response.status_code == 200, response.text
        user_id: str = response.json()["user"]["id"]
        return user_id


@pytest.fixture
def admin(live: RunningStack) -> Admin:
    return Admin(live)


def login(browser: httpx.Client, login_id: str, password: str, **headers: str) -> httpx.Response:
    return browser.post(
        "/auth/native/login", json={"login_id": login_id, "password": password}, headers={**CSRF, **headers}
    )


def test_password_only_sign_in_under_the_kickstart_policy(live: RunningStack, browser: httpx.Client) -> None:
    assert browser.get("/api/session").json() == {"authenticated": False, "sign_in": ["native", "hosted"]}
    response = login(browser, "dave@example.com", live.password)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email"] == "dave@example.com"
    assert [cookie.name for cookie in browser.cookies.jar] == ["stepup_session"]  # no FusionAuth cookie
    assert browser.get("/api/session").json()["authenticated"] is True
    # Without a second factor at sign-in, the privileged action still asks for one.
    telegram = browser.post("/api/telegrams", json={"recipient": "Ann", "message": "Hi"}, headers=CSRF)
    assert telegram.status_code == 401 and telegram.json()["error"] == "insufficient_user_authentication"
    assert browser.post("/auth/logout", headers=CSRF).status_code == 200
    assert browser.get("/api/session").json()["authenticated"] is False


def test_242_with_totp_signs_in_stepped_up(live: RunningStack, browser: httpx.Client, admin: Admin) -> None:
    admin.login_policy("Enabled")
    due = login(browser, "alice@example.com", live.password)
    assert due.status_code == 200, due.text
    assert due.json()["authenticated"] is False
    assert [m["method"] for m in due.json()["two_factor"]["methods"]] == ["authenticator"]
    assert browser.get("/api/session").json()["authenticated"] is False

    wrong = browser.post("/auth/native/two-factor/finish", json={"code": "000000"}, headers=CSRF)
    assert (wrong.status_code, wrong.json()["attempts_remaining"]) == (400, 3)
    done = browser.post(
        "/auth/native/two-factor/finish", json={"code": live.totp_code("alice@example.com")}, headers=CSRF
    )
    assert done.status_code == 200, done.text
    assert done.json()["step_up"]["active"] is True and done.json()["step_up"]["method"] == "authenticator"
    # A fresh step-up for the time window; the telegram, bound by default, is still confirmed for what it is.
    assert browser.get("/api/session").json()["step_up"]["active"] is True
    telegram = browser.post("/api/telegrams", json={"recipient": "Bob", "message": "Confirm me"}, headers=CSRF)
    assert telegram.status_code == 401, telegram.text
    assert telegram.json()["transaction"]["summary"] == "singing telegram to Bob — “Confirm me”"
    signed_in = browser.get("/api/activity").json()["events"][0]
    assert (signed_in["kind"], signed_in["via"], signed_in["method"]) == ("sign_in", "native", "authenticator")


def test_242_with_an_emailed_code(live: RunningStack, browser: httpx.Client, admin: Admin) -> None:
    admin.login_policy("Enabled")
    due = login(browser, "bob@example.com", live.password).json()
    [email] = due["two_factor"]["methods"]
    assert (email["method"], email["hint"]) == ("email", "b•••@example.com")
    sent = browser.post("/auth/native/two-factor/send", json={"method_id": email["id"]}, headers=CSRF)
    assert sent.status_code == 200, sent.text
    done = browser.post(
        "/auth/native/two-factor/finish", json={"code": live.emailed_code("bob@example.com")}, headers=CSRF
    )
    assert done.status_code == 200, done.text
    assert done.json()["user"]["email"] == "bob@example.com" and done.json()["step_up"]["method"] == "email"


def test_every_refusal_end_to_end(live: RunningStack, browser: httpx.Client, admin: Admin) -> None:
    def refused(login_id: str, password: str = "a-long-password") -> tuple[int, str]:
        response = login(browser, login_id, password)
        assert "stepup_session" not in browser.cookies
        return response.status_code, response.json()["error"]

    wrong = login(browser, "dave@example.com", "not-the-password")
    unknown = login(browser, "nobody@example.com", "not-the-password")
    assert wrong.status_code == unknown.status_code == 401 and wrong.content == unknown.content

    locked = admin.user("e2e-locked@example.com")
    admin.call("DELETE", f"/api/user/{locked}")
    # Locked: FusionAuth's 423 comes before the password is checked, so it is answered like a wrong password.
    assert refused("e2e-locked@example.com") == (401, "invalid_credentials")

    expired = admin.user("e2e-expired@example.com", expiry=1)
    assert expired and refused("e2e-expired@example.com") == (403, "account_expired")

    admin.user("e2e-change@example.com", passwordChangeRequired=True)
    assert refused("e2e-change@example.com") == (403, "password_change_required")

    admin.user("e2e-unregistered@example.com", register=False)
    assert refused("e2e-unregistered@example.com") == (403, "not_registered")

    admin.call("PATCH", f"/api/tenant/{TENANT_ID}", {"tenant": {"emailConfiguration": {"verifyEmail": True}}})
    admin.user("e2e-unverified@example.com", verified=False)
    assert refused("e2e-unverified@example.com") == (403, "verification_required")
    admin.call("PATCH", f"/api/tenant/{TENANT_ID}", {"tenant": {"emailConfiguration": {"verifyEmail": False}}})
    admin.call("PATCH", f"/api/application/{admin.application_id}", {"application": {"verifyRegistration": True}})
    admin.user("e2e-unverified-registration@example.com")
    assert refused("e2e-unverified-registration@example.com") == (403, "verification_required")

    # Kickstart's lockout: five wrong passwords, then FusionAuth prevents the login (409) for three minutes, which the
    # answer says: a lock that ends is not "contact support".
    admin.user("e2e-guessed@example.com")
    for _ in range(5):
        assert refused("e2e-guessed@example.com", "wrong-password") == (401, "invalid_credentials")
    before = time.time()
    locked = login(browser, "e2e-guessed@example.com", "a-long-password")
    assert (locked.status_code, locked.json()["error"]) == (429, "temporarily_locked")
    assert 170 <= locked.json()["retry_after"] <= 181 and locked.headers["Retry-After"] == str(
        locked.json()["retry_after"]
    )
    until = datetime.fromisoformat(locked.json()["locked_until"]).timestamp()
    assert before + 170 <= until <= time.time() + 181

    admin.login_policy("Required")
    assert refused("dave@example.com", live.password) == (403, "second_factor_setup_required")


def test_guessing_limits_count_the_address_the_trusted_proxy_names(tmp_path: Path) -> None:
    # uvicorn believes X-Forwarded-For from 127.0.0.1 (forwarded_allow_ips, as `serve` configures it), so each
    # forwarded address below has its own budget, and the BFF sends it to FusionAuth as ipAddress.
    with running_stack(tmp_path, login={"max_failures_per_login_id": 3, "max_failures_per_address": 4}) as live:
        with httpx.Client(base_url=live.bff_url, timeout=10) as browser:
            first = {"X-Forwarded-For": "203.0.113.1"}
            for attempt in range(3):
                assert login(browser, "alice@example.com", "wrong", **first).status_code == 401, attempt
            refused = login(browser, "alice@example.com", live.password, **first)
            assert (refused.status_code, refused.json()["error"]) == (429, "too_many_attempts")
            assert refused.headers["retry-after"] == str(refused.json()["retry_after"])
            # Another user behind the same address is below the address's limit.
            assert login(browser, "dave@example.com", live.password, **first).status_code == 200
            assert login(browser, "carol@example.com", "wrong", **first).status_code == 401  # the 4th failure
            assert login(browser, "carol@example.com", live.password, **first).status_code == 429
            # Another address is another budget, but alice's own stays spent from everywhere.
            other = {"X-Forwarded-For": "203.0.113.2"}
            assert login(browser, "carol@example.com", live.password, **other).status_code == 200
            assert login(browser, "alice@example.com", live.password, **other).status_code == 429


def test_login_csrf_is_refused(live: RunningStack, browser: httpx.Client) -> None:
    body = {"login_id": "dave@example.com", "password": live.password}
    for headers in ({}, {**CSRF, "Origin": "https://evil.example"}, {**CSRF, "Sec-Fetch-Site": "cross-site"}):
        response = browser.post("/auth/native/login", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]) == (403, "csrf_rejected")
    assert browser.get("/api/session").json()["authenticated"] is False


def test_nothing_secret_reaches_the_browser_or_the_log(
    live: RunningStack, browser: httpx.Client, admin: Admin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    admin.login_policy("Enabled")
    responses = [
        login(browser, "alice@example.com", "a-wrong-password"),
        login(browser, "alice@example.com", live.password),
    ]
    directory = live.stack.fusionauth.directory
    two_factor_ids = list(directory.challenges)
    assert two_factor_ids
    responses.append(
        browser.post("/auth/native/two-factor/finish", json={"code": live.totp_code("alice@example.com")}, headers=CSRF)
    )
    assert responses[-1].status_code == 200
    admin.login_policy("Disabled")
    responses.append(login(browser, "dave@example.com", live.password))
    tokens = [refresh.token for refresh in directory.refresh_tokens.values()]
    responses.append(browser.get("/api/session"))

    secrets = [*two_factor_ids, *tokens, live.password, "a-wrong-password", "access_token", "refresh_token"]
    for response in responses:
        visible = response.text + json.dumps(response.headers.multi_items())
        for secret in secrets:
            assert secret not in visible, f"{secret} leaked in {response.request.url.path}"
        assert not JWT.search(visible), f"a JWT leaked in {response.request.url.path}"
    # httpcore's DEBUG trace prints whole response headers, FusionAuth's token cookies among them: the log config of
    # `serve` and `dev` pins it at WARNING whatever the level, so those lines never exist outside this capture.
    assert configure_logging("debug")["loggers"]["httpcore"]["level"] == "WARNING"
    logged = "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("httpcore"))
    for secret in [*two_factor_ids, *tokens, live.password, "a-wrong-password"]:
        assert secret not in logged
    assert not JWT.search(logged)
