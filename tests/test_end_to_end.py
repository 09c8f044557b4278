"""The BFF against the dev FusionAuth over real HTTP: sign in through the form, step up, send a telegram."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepup_bff.cli import main
from support.dev_stack import RunningStack, running_stack

pytestmark = pytest.mark.live
CSRF = {"X-CSRF": "1"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(tmp_path) as running:
        yield running


@pytest.fixture
def browsers() -> Iterator[list[httpx.Client]]:
    opened: list[httpx.Client] = []
    yield opened
    for client in opened:
        client.close()


def sign_in(live: RunningStack, login_id: str, browsers: list[httpx.Client]) -> httpx.Client:
    browsers.append(live.sign_in(login_id))
    return browsers[-1]


def test_sign_in_step_up_with_totp_and_send_a_telegram(live: RunningStack, browsers: list[httpx.Client]) -> None:
    browser = sign_in(live, "alice@example.com", browsers)
    session = browser.get(f"{live.bff_url}/api/session").json()
    assert session["authenticated"] is True and session["user"]["email"] == "alice@example.com"

    telegram = {"recipient": "Bob", "message": "Happy birthday"}
    challenge = browser.post(f"{live.bff_url}/api/telegrams", json=telegram, headers={**CSRF, "Idempotency-Key": "e2e"})
    assert challenge.status_code == 401 and challenge.json()["error"] == "insufficient_user_authentication"
    transaction = challenge.json()["transaction"]
    assert transaction["summary"] == "singing telegram to Bob — “Happy birthday”"

    start = browser.post(f"{live.bff_url}/api/step-up/start", json={"transaction_id": transaction["id"]}, headers=CSRF)
    assert start.status_code == 200, start.text
    assert [m["method"] for m in start.json()["methods"]] == ["authenticator"]
    finish = browser.post(
        f"{live.bff_url}/api/step-up/finish", json={"code": live.totp_code("alice@example.com")}, headers=CSRF
    )
    assert finish.status_code == 200, finish.text
    assert finish.json()["transaction"]["id"] == transaction["id"]

    sent = browser.post(f"{live.bff_url}/api/telegrams", json=telegram, headers={**CSRF, "Idempotency-Key": "e2e"})
    assert sent.status_code == 201, sent.text
    assert browser.get(f"{live.bff_url}/api/telegrams").json()["telegrams"][0]["recipient"] == "Bob"
    kinds = [event["kind"] for event in browser.get(f"{live.bff_url}/api/activity").json()["events"]]
    assert kinds == ["privileged_action", "step_up_verified", "step_up_started", "sign_in"]

    logout = browser.post(f"{live.bff_url}/auth/logout", headers=CSRF)
    assert logout.status_code == 200
    assert logout.json()["redirect"].startswith(f"{live.fusionauth_url}/oauth2/logout?")
    assert browser.get(f"{live.bff_url}/api/session").json()["authenticated"] is False


def test_step_up_with_an_emailed_code(live: RunningStack, browsers: list[httpx.Client]) -> None:
    browser = sign_in(live, "bob@example.com", browsers)
    telegram = {"recipient": "Ann", "message": "Hi"}
    challenge = browser.post(f"{live.bff_url}/api/telegrams", json=telegram, headers=CSRF).json()
    transaction = {"transaction_id": challenge["transaction"]["id"]}
    start = browser.post(f"{live.bff_url}/api/step-up/start", json=transaction, headers=CSRF).json()
    email = next(method for method in start["methods"] if method["method"] == "email")
    assert email["hint"] == "b•••@example.com"

    sent = browser.post(f"{live.bff_url}/api/step-up/send", json={"method_id": email["id"]}, headers=CSRF)
    assert sent.status_code == 200, sent.text
    wrong = browser.post(f"{live.bff_url}/api/step-up/finish", json={"code": "000000"}, headers=CSRF)
    assert wrong.status_code == 400 and wrong.json()["attempts_remaining"] == 3
    code = live.emailed_code("bob@example.com")
    # The email says what the code confirms.
    assert live.messages()[-1]["text"].startswith("You are confirming: singing telegram to Ann — “Hi”\n")
    finish = browser.post(f"{live.bff_url}/api/step-up/finish", json={"code": code}, headers=CSRF)
    assert finish.status_code == 200, finish.text
    assert finish.json()["transaction"]["id"] == transaction["transaction_id"]
    sent = browser.post(f"{live.bff_url}/api/telegrams", json=telegram, headers=CSRF)
    assert sent.status_code == 201
    verified = browser.get(f"{live.bff_url}/api/activity").json()["events"][1]
    assert (verified["kind"], verified["method"]) == ("step_up_verified", "email")


def test_user_without_a_second_factor_is_told(live: RunningStack, browsers: list[httpx.Client]) -> None:
    browser = sign_in(live, "dave@example.com", browsers)
    start = browser.post(f"{live.bff_url}/api/step-up/start", json={}, headers=CSRF)
    assert start.status_code == 409 and start.json()["error"] == "no_second_factor"


def test_dev_command_reports_a_port_in_use(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["dev", "--port", str(port), "--fusionauth-port", "0", "--data-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"port {port} (stepup-bff) is in use" in err
    assert "Traceback" not in err
