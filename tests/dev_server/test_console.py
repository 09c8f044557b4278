"""The dev outbox and console: codes logged, listed as JSON, and shown with the current TOTP codes."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from fusionauth_dev import DevServer, ManualClock, create_dev_server, totp

from .conftest import BFF_KEY, ENV, KICKSTART, assert_dev_page


def test_messages_are_listed_newest_last_and_logged(
    client: TestClient, server: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    assert client.get("/_dev/messages").json() == []
    started = client.post(
        "/api/two-factor/start", json={"loginId": "bob@example.com"}, headers={"Authorization": BFF_KEY}
    )
    two_factor_id = started.json()["twoFactorId"]
    method_id = started.json()["methods"][0]["id"]
    with caplog.at_level(logging.INFO, logger="fusionauth_dev.outbox"):
        client.post(f"/api/two-factor/send/{two_factor_id}", json={"methodId": method_id})
        client.post(f"/api/two-factor/send/{two_factor_id}", json={"methodId": method_id})
    messages = client.get("/_dev/messages").json()
    assert [m["to"] for m in messages] == ["bob@example.com", "bob@example.com"]
    assert messages[-1]["code"] == server.outbox.last_code_for("bob@example.com")
    assert set(messages[0]) == {"method", "to", "code", "sent_at", "subject", "text", "html"}
    assert messages[0]["text"] == f"Your verification code is {messages[0]['code']}. It expires in a minute."
    assert messages[0]["sent_at"].startswith("2023-11-14T22:13:")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [f"dev outbox: email to bob@example.com: code {m['code']}" for m in messages]


def test_console_page_shows_totp_codes_and_messages_without_script(client: TestClient, clock: ManualClock) -> None:
    html = assert_dev_page(client.get("/_dev"))
    assert '<meta http-equiv="refresh" content="5">' in html
    assert totp.code_at("KnCWSYwMi0S4pr92R7iRpUyfDow=", clock.now()) in html
    assert totp.code_at("UbNTKDMh4PY61N/nDTd9n88Qz98=", clock.now()) in html
    codes = {row["loginId"]: row["code"] for row in client.get("/_dev/totp").json()}
    assert codes["alice@example.com"] == totp.code_at("KnCWSYwMi0S4pr92R7iRpUyfDow=", clock.now())


def test_console_can_be_turned_off(clock: ManualClock) -> None:
    server = create_dev_server([KICKSTART], env=ENV, clock=clock, dev_console=False)
    with TestClient(server.app) as client:
        assert client.get("/_dev/messages").status_code == 404
