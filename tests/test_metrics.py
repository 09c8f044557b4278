"""Prometheus metrics: names, labels and counts after real requests (FusionAuth mocked by respx), bounded labels,
no personal data in any label, and no /metrics on the public app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from prometheus_client import generate_latest

from conftest import JSON_HEADERS, FakeClock, make_settings, sign_in
from stepup_bff.ops.metrics import Metrics, metric_names
from stepup_bff.settings import Settings
from support.fake_fusionauth import USER_ID, TokenFactory
from support.metrics import sample_value
from support.two_factor import VALID_CODE, FakeTwoFactor

TELEGRAM = {"recipient": "Bob", "message": "Happy birthday"}


def post(client: TestClient, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers=JSON_HEADERS)


def requests(metrics: Metrics, route: str, method: str, status: int) -> float:
    return sample_value(
        metrics, "stepup_bff_http_request_duration_seconds_count", route=route, method=method, status=str(status)
    )


def labelled(metrics: Metrics) -> dict[str, set[tuple[tuple[str, str], ...]]]:
    """Each series name with the label sets it was recorded with (histogram buckets' `le` left out)."""
    found: dict[str, set[tuple[tuple[str, str], ...]]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            found.setdefault(sample.name, set()).add(labels)
    return found


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def counted(app_factory: Any, settings: Settings, fusionauth: respx.MockRouter, metrics: Metrics) -> TestClient:
    client: TestClient = app_factory(settings, metrics)
    return client


def test_a_scripted_session_is_counted_by_route_operation_and_outcome(
    counted: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> None:
    two_factor = FakeTwoFactor(fusionauth)
    assert sign_in(counted, fusionauth, tokens).status_code == 303
    refused = post(counted, "/api/telegrams", TELEGRAM)
    assert refused.status_code == 401
    transaction = {"transaction_id": refused.json()["transaction"]["id"]}
    assert post(counted, "/api/step-up/start", transaction).status_code == 200
    assert post(counted, "/api/step-up/finish", {"code": "000000"}).status_code == 400
    assert post(counted, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
    assert post(counted, "/api/telegrams", TELEGRAM).status_code == 201
    assert post(counted, "/auth/logout").status_code == 200

    # Requests by route template, method and status.
    assert requests(metrics, "/auth/login", "GET", 302) == 1
    assert requests(metrics, "/auth/callback", "GET", 303) == 1
    assert requests(metrics, "/api/telegrams", "POST", 401) == 1
    assert requests(metrics, "/api/telegrams", "POST", 201) == 1
    assert requests(metrics, "/api/step-up/start", "POST", 200) == 1
    assert requests(metrics, "/api/step-up/finish", "POST", 400) == 1
    assert requests(metrics, "/api/step-up/finish", "POST", 200) == 1
    assert requests(metrics, "/auth/logout", "POST", 200) == 1
    assert sample_value(metrics, "stepup_bff_http_requests_in_progress") == 0
    # FusionAuth calls by operation and outcome (421 for the wrong code is a client error).
    for operation, outcome in [
        ("discovery", "ok"),
        ("jwks", "ok"),
        ("token", "ok"),
        ("two_factor_start", "ok"),
        ("two_factor_login", "client_error"),
        ("two_factor_login", "ok"),
        ("revoke_refresh_token", "ok"),
    ]:
        count = sample_value(
            metrics, "stepup_bff_fusionauth_request_duration_seconds_count", operation=operation, outcome=outcome
        )
        assert count == 1, (operation, outcome)
    # Step-up, sign-in, sign-out and session outcomes.
    assert sample_value(metrics, "stepup_bff_step_up_total", step="start", outcome="started") == 1
    assert sample_value(metrics, "stepup_bff_step_up_total", step="finish", outcome="wrong_code") == 1
    assert sample_value(metrics, "stepup_bff_step_up_total", step="finish", outcome="verified") == 1
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="success") == 1
    assert sample_value(metrics, "stepup_bff_sign_outs_total", kind="hosted") == 1
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="sign_out") == 1
    assert sample_value(metrics, "stepup_bff_workers") == 1
    # The bound telegram: refused once for want of a step-up; the activity log's events by kind.
    assert sample_value(metrics, "stepup_bff_transaction_refusals_total", action="send_telegram", reason="no_step_up")
    for kind, count in [
        ("sign_in", 1),
        ("step_up_started", 1),
        ("step_up_wrong_code", 1),
        ("step_up_verified", 1),
        ("privileged_action", 1),
        ("sign_out", 1),
    ]:
        assert sample_value(metrics, "stepup_bff_activity_events_total", kind=kind) == count, kind

    # Every series has exactly the label names it is declared with.
    label_names = {
        "stepup_bff_http_request_duration_seconds_count": {"route", "method", "status"},
        "stepup_bff_fusionauth_request_duration_seconds_count": {"operation", "outcome"},
        "stepup_bff_step_up_total": {"step", "outcome"},
        "stepup_bff_sign_ins_total": {"kind", "outcome"},
        "stepup_bff_sign_outs_total": {"kind"},
        "stepup_bff_sessions_ended_total": {"reason"},
        "stepup_bff_transaction_refusals_total": {"action", "reason"},
        "stepup_bff_activity_events_total": {"kind"},
    }
    for name, expected in label_names.items():
        assert {frozenset(k for k, _ in labels) for labels in labelled(metrics)[name]} == {frozenset(expected)}, name
    # No label value is personal or secret: no user id, email, twoFactorId, start code or token.
    exposition = generate_latest(metrics.registry).decode()
    for secret in [USER_ID, "alice@example.com", *two_factor.secrets]:
        assert secret not in exposition


def test_sessions_ended_by_reason(
    counted: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics, clock: FakeClock
) -> None:
    assert sign_in(counted, fusionauth, tokens).status_code == 303
    assert sign_in(counted, fusionauth, tokens).status_code == 303  # a second sign-in replaces the first session
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="replaced") == 1
    clock.advance(1800)
    assert counted.get("/api/session").json()["authenticated"] is False
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="idle_timeout") == 1
    assert sign_in(counted, fusionauth, tokens).status_code == 303
    assert post(counted, "/auth/logout").status_code == 200
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="sign_out") == 1
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="success") == 3


def test_failed_sign_ins_are_counted_by_their_error_code(
    counted: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> None:
    assert counted.get("/auth/callback", params={"error": "access_denied", "state": "s"}).status_code == 303
    assert counted.get("/auth/callback", params={"code": "c", "state": "unknown"}).status_code == 303
    fusionauth["token"].respond(400, json={"error": "invalid_grant"})
    login = counted.get("/auth/login")
    state = dict(httpx.URL(login.headers["location"]).params)["state"]
    assert counted.get("/auth/callback", params={"code": "c", "state": state}).headers["location"] == (
        "/?error=token_exchange_failed"
    )
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="access_denied") == 1
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="login_expired") == 1
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="token_exchange_failed") == 1
    assert sample_value(metrics, "stepup_bff_sign_ins_total", kind="hosted", outcome="success") == 0


def test_step_up_expired_blocked_and_locked(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    metrics = Metrics()
    settings = make_settings(tmp_path, step_up={"max_failures": 2, "max_consecutive_failures": 3})
    client: TestClient = app_factory(settings, metrics)
    FakeTwoFactor(fusionauth)
    assert sign_in(client, fusionauth, tokens).status_code == 303
    assert post(client, "/api/step-up/start").status_code == 200
    clock.advance(301)
    assert post(client, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 410
    assert post(client, "/api/step-up/start").status_code == 200
    assert post(client, "/api/step-up/finish", {"code": "000000"}).status_code == 400
    assert post(client, "/api/step-up/finish", {"code": "000000"}).status_code == 429  # the second: blocked
    assert post(client, "/api/step-up/start").status_code == 429
    clock.advance(901)  # the failure window passes; the consecutive count does not
    assert post(client, "/api/step-up/start").status_code == 200
    assert post(client, "/api/step-up/finish", {"code": "000000"}).status_code == 403  # the third in a row: locked
    assert post(client, "/api/step-up/send", {"method_id": "MAIL"}).status_code == 403
    count = {
        (step, outcome): sample_value(metrics, "stepup_bff_step_up_total", step=step, outcome=outcome)
        for step, outcome in [
            ("finish", "expired"),
            ("finish", "wrong_code"),
            ("finish", "blocked"),
            ("start", "blocked"),
            ("finish", "locked"),
            ("send", "locked"),
            ("start", "started"),
        ]
    }
    assert count == {
        ("finish", "expired"): 1,
        ("finish", "wrong_code"): 1,
        ("finish", "blocked"): 1,
        ("start", "blocked"): 1,
        ("finish", "locked"): 1,
        ("send", "locked"): 1,
        ("start", "started"): 3,
    }


@pytest.mark.parametrize(
    ("side_effect", "outcome"),
    [
        (httpx.ReadTimeout("slow"), "timeout"),
        (httpx.ConnectError("refused"), "unavailable"),
        (httpx.Response(503), "server_error"),
    ],
)
def test_fusionauth_failures_are_counted_by_outcome(
    counted: TestClient, fusionauth: respx.MockRouter, metrics: Metrics, side_effect: Any, outcome: str
) -> None:
    fusionauth["discovery"].mock(side_effect=[side_effect])
    assert counted.get("/auth/login").status_code == 303  # sent home with the error
    count = sample_value(
        metrics, "stepup_bff_fusionauth_request_duration_seconds_count", operation="discovery", outcome=outcome
    )
    assert count == 1


def test_head_is_counted_under_the_route_that_answered_it(counted: TestClient, metrics: Metrics) -> None:
    assert counted.head("/api/session").status_code == 200
    labels = {"route": "/api/session", "method": "HEAD", "status": "200"}
    assert sample_value(metrics, "stepup_bff_http_request_duration_seconds_count", **labels) == 1


def test_route_and_method_labels_stay_bounded(counted: TestClient, metrics: Metrics) -> None:
    # Every file path of the single-page app, and every unknown path, is one series; so is every odd method.
    for path in ("/", "/app.js", "/no-such-file-1", "/no-such-file-2", "/api/nothing/here"):
        counted.get(path)
    counted.get("/api/session")
    counted.request("BREW", "/api/session")  # not a method of the route: 405
    series = labelled(metrics)["stepup_bff_http_request_duration_seconds_count"]
    routes = {dict(labels)["route"] for labels in series}
    # The SPA's files are low-priority frontend routes that record no route in the scope: with every unknown path
    # they share the one fixed label.
    assert routes == {"unmatched", "/api/session"}
    assert {dict(labels)["method"] for labels in series} == {"GET", "other"}


def test_the_public_app_serves_no_metrics(counted: TestClient) -> None:
    # /metrics is only on the separate listener of `serve` (tests/test_serve.py); here it is just a missing file.
    response = counted.get("/metrics")
    assert response.status_code == 404
    assert "stepup_bff_" not in response.text


def test_metric_names_cover_every_metric() -> None:
    names = metric_names(Metrics())
    for name in (
        "stepup_bff_http_request_duration_seconds_bucket",
        "stepup_bff_http_request_duration_seconds_count",
        "stepup_bff_http_requests_in_progress",
        "stepup_bff_fusionauth_request_duration_seconds_sum",
        "stepup_bff_step_up_total",
        "stepup_bff_sign_ins_total",
        "stepup_bff_sign_outs_total",
        "stepup_bff_sessions_ended_total",
        "stepup_bff_store_errors_total",
        "stepup_bff_workers",
    ):
        assert name in names


@pytest.mark.parametrize("port", [None, 9109])
def test_per_request_series_are_recorded_only_when_something_can_read_them(tmp_path: Path, port: int | None) -> None:
    """Without metrics.port (the default) no listener serves the metrics: the app's own Metrics then skips the
    per-request series, the only ones on every request's path. With a port they are counted."""
    from stepup_bff.app import create_app

    settings = make_settings(tmp_path, metrics={"port": port})
    with TestClient(create_app(settings), follow_redirects=False) as client:
        assert client.get("/healthz").status_code == 200
        metrics: Metrics = client.app_state["services"].metrics
        assert requests(metrics, "/healthz", "GET", 200) == (1 if port is not None else 0)
        assert sample_value(metrics, "stepup_bff_http_requests_in_progress") == 0
