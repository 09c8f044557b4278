"""GET /readyz asks the store and FusionAuth (discovery, cached a few seconds); /healthz asks nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import FakeClock
from stepup_bff.ops.metrics import Metrics
from stepup_bff.ops.readiness import FUSIONAUTH_CACHE, Probe, Readiness
from stepup_bff.settings import Settings
from support.fake_fusionauth import discovery
from support.metrics import sample_value


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def ready_client(app_factory: Any, settings: Settings, fusionauth: respx.MockRouter, metrics: Metrics) -> TestClient:
    client: TestClient = app_factory(settings, metrics)
    return client


def store_file(settings: Settings) -> Path:
    return Path(settings.storage.url.removeprefix("sqlite:///"))


def test_ready_when_store_and_fusionauth_answer(ready_client: TestClient, fusionauth: respx.MockRouter) -> None:
    response = ready_client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"store": "ok", "database": "ok", "fusionauth": "ok"}}
    assert fusionauth["discovery"].call_count == 1


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [
        (httpx.ConnectError("refused"), "fusionauth_unavailable"),
        (httpx.ReadTimeout("slow"), "fusionauth_timeout"),
        (httpx.Response(500), "fusionauth_error"),
        (httpx.Response(200, text="<html>a proxy's error page</html>"), "fusionauth_error"),
    ],
)
def test_fusionauth_going_away_and_coming_back(
    ready_client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock, failure: Any, verdict: str
) -> None:
    assert ready_client.get("/readyz").status_code == 200
    fusionauth["discovery"].mock(side_effect=[failure])
    clock.advance(FUSIONAUTH_CACHE)  # the verdict is cached for a few seconds
    down = ready_client.get("/readyz")
    assert down.status_code == 503
    assert down.json()["error"] == "not_ready"
    assert down.json()["checks"] == {"store": "ok", "database": "ok", "fusionauth": verdict}
    assert "fusionauth" in down.json()["error_description"]
    # Liveness does not care: restarting the BFF would not bring FusionAuth back.
    assert ready_client.get("/healthz").status_code == 200
    fusionauth["discovery"].mock(side_effect=None)
    fusionauth["discovery"].respond(json=discovery())
    assert ready_client.get("/readyz").status_code == 503  # still the cached verdict
    clock.advance(FUSIONAUTH_CACHE)
    assert ready_client.get("/readyz").status_code == 200


def test_probes_do_not_hammer_fusionauth(
    ready_client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    for _ in range(20):
        assert ready_client.get("/readyz").status_code == 200
        clock.advance(0.2)
    assert fusionauth["discovery"].call_count == 1  # 20 probes in 4 s: one call
    clock.advance(FUSIONAUTH_CACHE)
    ready_client.get("/readyz")
    assert fusionauth["discovery"].call_count == 2


def test_readiness_asks_fusionauth_even_when_discovery_is_cached(
    ready_client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    assert ready_client.get("/auth/login").status_code == 302  # discovery is now cached for an hour
    fusionauth["discovery"].mock(side_effect=httpx.ConnectError("refused"))
    clock.advance(FUSIONAUTH_CACHE)
    assert ready_client.get("/readyz").json()["checks"]["fusionauth"] == "fusionauth_unavailable"


def test_store_file_going_away_and_coming_back(ready_client: TestClient, settings: Settings, metrics: Metrics) -> None:
    path = store_file(settings)
    assert ready_client.get("/readyz").status_code == 200
    # The data directory is wiped or unmounted: the open file still answers, but writes would be lost.
    moved = path.with_name("moved-away.sqlite3")
    path.rename(moved)
    down = ready_client.get("/readyz")
    assert down.status_code == 503
    # By default the store and the database share the one SQLite file, so both checks see it go.
    assert down.json()["checks"] == {"store": "unavailable", "database": "unavailable", "fusionauth": "ok"}
    path.write_bytes(b"")  # an empty file in its place is not the store either
    assert ready_client.get("/readyz").json()["checks"]["store"] == "unavailable"
    path.unlink()
    moved.rename(path)
    assert ready_client.get("/readyz").status_code == 200
    # Two failing readiness checks, each pinging the store and the database.
    assert sample_value(metrics, "stepup_bff_store_errors_total", backend="sqlite", operation="ping") == 4


def test_store_that_cannot_take_its_write_lock_is_not_ready(ready_client: TestClient, settings: Settings) -> None:
    # Another process holds the write lock (a stuck worker, a backup tool): every write would wait and fail.
    other = sqlite3.connect(store_file(settings), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        down = ready_client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"]["store"] == "unavailable"
        other.execute("ROLLBACK")
        assert ready_client.get("/readyz").status_code == 200
    finally:
        other.close()


def test_a_hanging_probe_times_out(clock: FakeClock) -> None:
    async def hangs() -> None:
        await asyncio.sleep(30)

    async def answers() -> None:
        return None

    readiness = Readiness([Probe("slow", hangs), Probe("fine", answers)], clock, timeout=0.05)
    assert asyncio.run(readiness.check()) == {"slow": "timeout", "fine": "ok"}


def test_verdict_changes_are_logged_once(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    healthy = [False]

    async def flaky() -> None:
        if not healthy[0]:
            raise ConnectionError("no route to host")

    readiness = Readiness([Probe("database", flaky)], clock)
    caplog.set_level("INFO", logger="stepup_bff.ops.readiness")
    for _ in range(3):
        assert asyncio.run(readiness.check()) == {"database": "unavailable"}
    healthy[0] = True
    assert asyncio.run(readiness.check()) == {"database": "ok"}
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "database failed: unavailable" in messages[0] and "database answers again" in messages[1]
