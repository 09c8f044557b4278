"""Second factors end to end: the BFF (as `stepup-bff dev` builds it) against the dev FusionAuth over real HTTP. The
BFF's FusionAuth calls (docs/fusionauth.md §8) meet the dev server that the conformance tests hold to FusionAuth's own
client; pyotp is the person's authenticator app, fed the otpauth URI the BFF answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest

from support.dev_stack import RunningStack, running_stack

pytestmark = pytest.mark.live
CSRF = {"X-CSRF": "1"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(tmp_path) as running:
        yield running


def native_sign_in(live: RunningStack, login_id: str) -> httpx.Client:
    browser = httpx.Client(base_url=live.bff_url, timeout=10)
    signed = browser.post("/auth/native/login", json={"login_id": login_id, "password": live.password}, headers=CSRF)
    assert signed.status_code == 200 and signed.json()["authenticated"], signed.text
    return browser


def post(browser: httpx.Client, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return browser.post(path, json=body or {}, headers=CSRF)


def step_up(browser: httpx.Client, refused: httpx.Response, code: str) -> None:
    transaction = refused.json()["transaction"]
    assert post(browser, "/api/step-up/start", {"transaction_id": transaction["id"]}).status_code == 200
    finished = post(browser, "/api/step-up/finish", {"code": code})
    assert finished.status_code == 200, finished.text


def test_dave_adds_an_authenticator_steps_up_with_it_and_a_recovery_code_and_removes_it(live: RunningStack) -> None:
    dave = native_sign_in(live, "dave@example.com")
    elsewhere = native_sign_in(live, "dave@example.com")
    listed = dave.get("/api/factors").json()
    assert listed["factors"] == [] and listed["enrolment"]["reauthentication_required"] is False

    started = post(dave, "/api/factors/authenticator/start")
    assert started.status_code == 200, started.text
    app = pyotp.parse_uri(started.json()["otpauth_uri"])
    wrong = post(dave, "/api/factors/authenticator/confirm", {"code": "000000" if app.now() != "000000" else "1"})
    assert wrong.json()["error"] == "invalid_code"
    confirmed = post(dave, "/api/factors/authenticator/confirm", {"code": app.now(), "name": "Phone"})
    assert confirmed.status_code == 201, confirmed.text
    recovery = confirmed.json()["recovery_codes"]
    assert len(recovery) == 10
    [factor] = dave.get("/api/factors").json()["factors"]
    assert (factor["method"], factor["hint"], factor["name"]) == ("authenticator", "Phone", "Phone")
    # Dave's other session ended with the change.
    assert elsewhere.get("/api/session").json()["authenticated"] is False

    # The new app confirms a telegram; so does a recovery code, once.
    telegram = {"recipient": "Erin", "message": "From Dave, with a new app"}
    refused = post(dave, "/api/telegrams", telegram)
    step_up(dave, refused, app.now())
    assert post(dave, "/api/telegrams", telegram).status_code == 201
    again = {"recipient": "Erin", "message": "And with a recovery code"}
    step_up(dave, post(dave, "/api/telegrams", again), recovery[0])
    assert post(dave, "/api/telegrams", again).status_code == 201
    refused = post(dave, "/api/telegrams", {"recipient": "Erin", "message": "Once only"})
    assert post(dave, "/api/step-up/start", {"transaction_id": refused.json()["transaction"]["id"]}).status_code == 200
    assert post(dave, "/api/step-up/finish", {"code": recovery[0]}).json()["error"] == "invalid_code"

    # Removing it: a step-up confirming the removal, then a code of the app.
    remove = f"/api/factors/{factor['id']}"
    refused = dave.request("DELETE", remove, json={"code": app.now()}, headers=CSRF)
    summary = refused.json()["transaction"]["summary"]
    assert summary == "removing your authenticator app “Phone”, your only way to confirm it's you"
    step_up(dave, refused, recovery[1])
    removed = dave.request("DELETE", remove, json={"code": app.now()}, headers=CSRF)
    assert removed.status_code == 200, removed.text
    assert removed.json()["factors"] == []
    assert live.stack.fusionauth.directory.users["da7e0000-0000-4000-8000-000000000004"].methods == []
    kinds = [event["kind"] for event in dave.get("/api/activity").json()["events"]]
    assert {"second_factor_added", "second_factor_removed"} <= set(kinds)
    dave.close()
    elsewhere.close()
