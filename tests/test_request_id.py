"""X-Request-ID: believed only from a trusted proxy (server.forwarded_allow_ips) and only in a safe shape, else
generated; on every response; sent along on the FusionAuth calls the request makes."""

from __future__ import annotations

import json
import re
import sqlite3
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, make_settings, sign_in
from stepup_bff.ops.metrics import Metrics
from stepup_bff.settings import Settings
from support.fake_fusionauth import USER_ID, TokenFactory
from support.metrics import sample_value
from support.two_factor import VALID_CODE, FakeTwoFactor

PROXY = ("10.0.0.5", 40000)
GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def behind_proxy(app_factory: Any, tmp_path: Any, fusionauth: respx.MockRouter) -> TestClient:
    settings = make_settings(tmp_path, server={"forwarded_allow_ips": "10.0.0.0/24"})
    client: TestClient = app_factory(settings, client=PROXY)
    return client


def test_every_response_carries_a_generated_request_id(client: TestClient) -> None:
    responses = [
        client.get("/healthz"),
        client.get("/api/session"),
        client.get("/no-such-page"),
        client.post("/api/step-up/start", json={}, headers=JSON_HEADERS),  # 401
        client.post("/auth/logout"),  # 403 csrf
        client.post(
            "/api/telegrams", content=b"x" * 20000, headers={**JSON_HEADERS, "Content-Type": "application/json"}
        ),
        client.get("/auth/login", headers={"X-Request-ID": "chosen-by-anyone"}),  # not from a trusted proxy
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert [response.status_code for response in responses] == [200, 200, 404, 401, 403, 413, 302]
    assert all(GENERATED.fullmatch(request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)


def test_an_unexpected_error_still_carries_the_request_id(
    app_factory: Any, settings: Settings, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    metrics = Metrics()
    client: TestClient = app_factory(settings, metrics, raise_server_exceptions=False)
    assert sign_in(client, fusionauth, tokens).status_code == 303
    # A telegram row that is not what we wrote (a hand-edited database: SQLite keeps text in a REAL column):
    # nothing handles that, so it is a 500.
    with sqlite3.connect(settings.database.url.removeprefix("sqlite:///")) as db:
        db.execute(
            "INSERT INTO telegrams (id, user_id, recipient, message, created_at, status) "
            "VALUES ('tg_x', ?, 'Bob', 'Hi', 'not a time', 'queued')",
            (USER_ID,),
        )
    response = client.get("/api/telegrams")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert GENERATED.fullmatch(response.headers["x-request-id"])
    labels = {"route": "/api/telegrams", "method": "GET", "status": "500"}
    assert sample_value(metrics, "stepup_bff_http_request_duration_seconds_count", **labels) == 1


def test_a_trusted_proxy_names_the_request_and_fusionauth_hears_it(
    behind_proxy: TestClient, fusionauth: respx.MockRouter
) -> None:
    response = behind_proxy.get("/auth/login", headers={"X-Request-ID": "lb-7f3a:trace/01=="})
    assert response.status_code == 302
    assert response.headers["x-request-id"] == "lb-7f3a:trace/01=="
    assert fusionauth["discovery"].calls.last.request.headers["x-request-id"] == "lb-7f3a:trace/01=="


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Request-ID", "two words")],
        [("X-Request-ID", 'quote"d')],
        [("X-Request-ID", "x" * 129)],
        [("X-Request-ID", "")],
        [("X-Request-ID", "a"), ("X-Request-ID", "b")],
    ],
)
def test_a_badly_shaped_id_is_replaced_even_from_a_trusted_proxy(
    behind_proxy: TestClient, headers: list[tuple[str, str]]
) -> None:
    response = behind_proxy.get("/healthz", headers=headers)
    assert GENERATED.fullmatch(response.headers["x-request-id"])


def test_each_fusionauth_call_of_a_request_carries_its_id(
    behind_proxy: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    FakeTwoFactor(fusionauth)
    assert sign_in(behind_proxy, fusionauth, tokens).status_code == 303
    headers = {**JSON_HEADERS, "X-Request-ID": "step-up-1"}
    assert behind_proxy.post("/api/step-up/start", json={}, headers=headers).status_code == 200
    assert fusionauth["two_factor_start"].calls.last.request.headers["x-request-id"] == "step-up-1"
    headers = {**JSON_HEADERS, "X-Request-ID": "step-up-2", "X-Forwarded-For": "203.0.113.9"}
    assert behind_proxy.post("/api/step-up/finish", json={"code": VALID_CODE}, headers=headers).status_code == 200
    login = fusionauth["two_factor_login"].calls.last.request
    assert login.headers["x-request-id"] == "step-up-2"
    # The same trust rule applies X-Forwarded-For: the browser's address reaches FusionAuth.
    assert json.loads(login.content)["ipAddress"] == "203.0.113.9"


def test_an_untrusted_peer_names_nothing(client: TestClient, fusionauth: respx.MockRouter) -> None:
    response = client.get("/auth/login", headers={"X-Request-ID": "spoofed", "X-Forwarded-For": "203.0.113.9"})
    assert response.headers["x-request-id"] != "spoofed"
    sent = fusionauth["discovery"].calls.last.request.headers["x-request-id"]
    assert sent == response.headers["x-request-id"]
