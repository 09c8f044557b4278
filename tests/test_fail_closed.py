"""Fail closed: with the store (real Redis) or the database (real PostgreSQL) gone, every request that needs it is a
503, never a 500, a grant or a session treated as valid; /healthz stays 200; and when the server comes back the same
app recovers without a restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, make_settings, sign_in, start_login
from support.backends import PostgresServer, RedisServer
from support.fake_fusionauth import TokenFactory
from support.step_up import UNBOUND, confirm_transaction, unbound
from support.two_factor import VALID_CODE, FakeTwoFactor

pytestmark = pytest.mark.live
TELEGRAM = {"recipient": "Bob", "message": "Happy birthday"}


def post(client: TestClient, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers={**JSON_HEADERS, **headers})


def stepped_up(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, *, bound: bool = False
) -> TestClient:
    """Signed in and stepped up: for the time window, or (`bound`) confirming TELEGRAM, not yet sent."""
    assert sign_in(client, fusionauth, tokens).status_code == 303
    FakeTwoFactor(fusionauth)
    if bound:
        refused = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k1"})
        assert confirm_transaction(client, refused).status_code == 200
        return client
    assert post(client, "/api/step-up/start").status_code == 200
    assert post(client, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
    return client


def _telegram_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM telegrams").fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.parametrize("mode", ["window", "single_use", "bound"])
def test_redis_gone_is_503_everywhere_and_comes_back(
    app_factory: Any,
    tmp_path: Path,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    redis_live: RedisServer,
    mode: str,
) -> None:
    settings = make_settings(
        tmp_path,
        storage={"url": redis_live.url, "timeout": 1.0, "connect_timeout": 1.0},
        step_up={} if mode == "bound" else unbound(single_use=mode == "single_use"),
    )
    client = stepped_up(app_factory(settings), fusionauth, tokens, bound=mode == "bound")
    login = start_login(client)  # a sign-in in progress, to come back while Redis is away
    revocations = fusionauth["revoke"].call_count

    redis_live.stop()
    answers = {
        "session": client.get("/api/session"),
        "telegram": post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k1"}),
        "list": client.get("/api/telegrams"),
        "start": post(client, "/api/step-up/start"),
        "send": post(client, "/api/step-up/send", {"method_id": "MAIL"}),
        "finish": post(client, "/api/step-up/finish", {"code": VALID_CODE}),
        "cancel": post(client, "/api/step-up/cancel"),
        "logout": post(client, "/auth/logout"),
    }
    for name, answer in answers.items():
        assert answer.status_code == 503, (name, answer.status_code, answer.text)
        assert answer.json()["error"] == "store_unavailable", name
        # No cookie is dropped or replaced on a failure: nothing about the session was decided.
        assert "set-cookie" not in answer.headers, name
    callback = client.get("/auth/callback", params={"code": "auth-code", "state": login.state})
    assert callback.status_code == 303 and callback.headers["location"] == "/?error=store_unavailable"
    assert client.get("/healthz").status_code == 200
    assert fusionauth["revoke"].call_count == revocations  # nothing was ended on a failed read
    assert fusionauth["two_factor_start"].call_count == 1  # and nothing asked of FusionAuth without the state

    redis_live.start()  # the same app, no restart
    assert client.get("/api/session").json()["authenticated"] is True
    sent = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k1"})
    assert sent.status_code == 201, sent.text


def test_a_stranger_needs_no_state(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, redis_live: RedisServer
) -> None:
    client: TestClient = app_factory(make_settings(tmp_path, storage={"url": redis_live.url, "timeout": 0.5}))
    redis_live.stop()
    assert client.get("/api/session").json()["authenticated"] is False
    assert client.get("/auth/login").status_code == 302  # the login state lives in a cookie until the callback


def test_postgres_gone_means_no_telegram_and_no_201_and_comes_back(
    app_factory: Any,
    tmp_path: Path,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    postgres_live: PostgresServer,
    postgres_url: str,
) -> None:
    settings = make_settings(
        tmp_path, database={"url": postgres_url, "timeout": 2.0, "connect_timeout": 2.0}, step_up=UNBOUND
    )
    client = stepped_up(app_factory(settings), fusionauth, tokens)
    assert post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "before"}).status_code == 201

    postgres_live.stop()
    try:
        sent = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "during"})
        assert sent.status_code == 503 and sent.json()["error"] == "database_unavailable", sent.text
        listed = client.get("/api/telegrams")
        assert listed.status_code == 503 and listed.json()["error"] == "database_unavailable"
        # The session lives in the store, not the database: still signed in, still stepped up.
        assert client.get("/api/session").json()["step_up"]["active"] is True
        assert client.get("/healthz").status_code == 200
    finally:
        postgres_live.start()

    assert _telegram_count(postgres_url) == 1  # the refused one was not stored
    again = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "during"})
    assert again.status_code == 201, again.text  # the same key: it was never stored, so now it is
    assert [t["id"] for t in client.get("/api/telegrams").json()["telegrams"]][0] == again.json()["id"]
    assert _telegram_count(postgres_url) == 2


def test_a_bound_telegram_waits_out_the_database_and_still_needs_no_second_confirmation(
    app_factory: Any,
    tmp_path: Path,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    postgres_live: PostgresServer,
    postgres_url: str,
) -> None:
    """The database is gone when the confirmed telegram is sent again: 503 before the guard (the idempotency look-up
    needs the database), so the confirmation is not spent, and the same request goes through once it is back."""
    settings = make_settings(tmp_path, database={"url": postgres_url, "timeout": 2.0, "connect_timeout": 2.0})
    client = stepped_up(app_factory(settings), fusionauth, tokens, bound=True)
    postgres_live.stop()
    try:
        sent = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k1"})
        assert sent.status_code == 503 and sent.json()["error"] == "database_unavailable", sent.text
    finally:
        postgres_live.start()
    # The pool reconnects by itself within seconds of the server's return (sooner or later under load): until then
    # 503 again, and never a request for a second confirmation.
    deadline = time.monotonic() + 15
    while (sent := post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k1"})).status_code == 503:
        assert time.monotonic() < deadline, sent.text
        time.sleep(0.2)
    assert sent.status_code == 201, sent.text
    assert _telegram_count(postgres_url) == 1
