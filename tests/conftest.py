"""Fixtures for the BFF's tests: settings, an injectable clock, a respx-mocked FusionAuth, and a TestClient.

FusionAuth is mocked at the HTTP boundary only (respx); our own code always runs for real.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from stepup_bff.app import create_app
from stepup_bff.ops.metrics import Metrics
from stepup_bff.settings import Settings
from support.backends import PostgresServer, RedisServer, postgres_server, redis_server
from support.fake_fusionauth import APPLICATION_ID, FA_PUBLIC_URL, FA_URL, USER_ID, TokenFactory, discovery, jwks

PUBLIC_URL = "http://localhost:9000"
API_KEY = "test-api-key-0123456789"
CLIENT_SECRET = "test-client-secret-0123456789"
SECRET_KEY = "k" * 40
JSON_HEADERS = {"X-CSRF": "1", "Origin": PUBLIC_URL}


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.current = start

    def now(self) -> float:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += seconds


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's own STEPUP_* variables must not leak into tests.
    for name in [name for name in os.environ if name.startswith("STEPUP_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "public_url": PUBLIC_URL,
        "fusionauth": {
            "url": FA_URL,
            "public_url": FA_PUBLIC_URL,
            "api_key": API_KEY,
            "application_id": APPLICATION_ID,
            "client_secret": CLIENT_SECRET,
        },
        "session": {"secret_keys": [SECRET_KEY]},
        "storage": {"url": f"sqlite:///{tmp_path / 'store.sqlite3'}"},
        "database": {"url": f"sqlite:///{tmp_path / 'store.sqlite3'}"},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def tokens(clock: FakeClock) -> TokenFactory:
    return TokenFactory(now=clock.now())


def refresh_grant(tokens: TokenFactory, clock: FakeClock, *, rotate: bool = False) -> Any:
    """A token endpoint answering refresh grants as FusionAuth does: new tokens minted at the clock's time for a refresh
    token it issued, 400 invalid_grant for any other (revoked, unknown). `rotate`: the one-time-use policy."""

    def answer(request: httpx.Request) -> httpx.Response:
        presented = parse_qs(request.content.decode())["refresh_token"][0]
        body = tokens.refreshed(presented, now=clock.now(), rotate=rotate)
        if body is None:
            return httpx.Response(400, json={"error": "invalid_grant", "error_reason": "refresh_token_not_found"})
        return httpx.Response(200, json=body)

    return answer


@pytest.fixture
def fusionauth(tokens: TokenFactory, clock: FakeClock) -> Iterator[respx.MockRouter]:
    """FusionAuth's back channel, mocked. Tests give the routes they use a response or side effect."""
    with respx.mock(base_url=FA_URL, assert_all_called=False) as router:  # assert_all_mocked stays on
        router.get("/.well-known/openid-configuration", name="discovery").respond(json=discovery())
        router.get("/.well-known/jwks.json", name="jwks").respond(json=jwks("key-1"))
        # Before "token": respx takes the first route that matches.
        router.post("/oauth2/token", data__contains={"grant_type": "refresh_token"}, name="refresh").mock(
            side_effect=refresh_grant(tokens, clock)
        )
        router.post("/oauth2/token", name="token")
        router.delete("/api/jwt/refresh", name="revoke_user").respond(200)
        router.get(path__regex=r"^/api/user-action/(?P<action_id>[^/]+)$", name="user_action")
        router.delete(path__regex=r"^/api/jwt/refresh/(?P<token_id>[^/]+)$", name="revoke").respond(200)
        router.post("/api/two-factor/start", name="two_factor_start")
        router.post(path__regex=r"^/api/two-factor/send/(?P<two_factor_id>[^/]+)$", name="two_factor_send")
        router.post("/api/two-factor/login", name="two_factor_login")
        router.post("/api/login", name="login")
        router.get(path__regex=r"^/api/user/(?P<user_id>[^/]+)$", name="user")
        router.get("/api/two-factor/secret", name="two_factor_secret")
        router.post(path__regex=r"^/api/user/two-factor/(?P<user_id>[^/]+)$", name="enable_two_factor")
        router.delete(path__regex=r"^/api/user/two-factor/(?P<user_id>[^/]+)$", name="disable_two_factor")
        yield router


@pytest.fixture
def app_factory(clock: FakeClock) -> Iterator[Any]:
    clients: list[TestClient] = []

    def build(settings: Settings, metrics: Metrics | None = None, **options: Any) -> TestClient:
        app = create_app(settings, clock=clock, metrics=metrics)
        client = TestClient(app, base_url=PUBLIC_URL, follow_redirects=False, **options)
        client.__enter__()  # runs the lifespan
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(app_factory: Any, settings: Settings, fusionauth: respx.MockRouter) -> TestClient:
    built: TestClient = app_factory(settings)
    return built


@dataclass(frozen=True)
class StartedLogin:
    state: str
    nonce: str
    code_challenge: str
    authorize_params: dict[str, str]


def start_login(client: TestClient, return_to: str | None = None) -> StartedLogin:
    response = client.get("/auth/login", params={"return_to": return_to} if return_to else None)
    assert response.status_code == 302, response.text
    location = urlsplit(response.headers["location"])
    params = {key: values[0] for key, values in parse_qs(location.query).items()}
    return StartedLogin(params["state"], params["nonce"], params["code_challenge"], params)


def sign_in(
    client: TestClient,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    *,
    sub: str = USER_ID,
    return_to: str | None = None,
) -> httpx.Response:
    """The whole browser round trip through HTTP: /auth/login, FusionAuth (mocked), /auth/callback."""
    login = start_login(client, return_to)
    fusionauth["token"].respond(json=tokens.token_response(nonce=login.nonce, sub=sub))
    return client.get("/auth/callback", params={"code": "auth-code", "state": login.state})


@pytest.fixture
def signed_in(client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory) -> TestClient:
    response = sign_in(client, fusionauth, tokens)
    assert response.status_code == 303, response.text
    return client


def replace_cookie(client: TestClient, name: str, value: str) -> None:
    """Put `value` in the jar as the one cookie called `name` (as a browser would after a Set-Cookie)."""
    jar = client.cookies.jar
    domains = {cookie.domain for cookie in jar if cookie.name == name} or {"localhost.local"}
    for cookie in [cookie for cookie in jar if cookie.name == name]:
        jar.clear(cookie.domain, cookie.path, cookie.name)
    for domain in domains:
        client.cookies.set(name, value, domain=domain, path="/")


# -- real Redis and PostgreSQL, one of each per test run, started only when a test asks (tests/support/backends.py) --


@pytest.fixture(scope="session")
def redis_instance() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def redis_live(redis_instance: RedisServer) -> RedisServer:
    """The test run's Redis, emptied for this test and running (a test before may have stopped it)."""
    if redis_instance.process is None:
        redis_instance.start()
    redis_instance.client().flushall()
    return redis_instance


@pytest.fixture(scope="session")
def postgres_instance() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_live(postgres_instance: PostgresServer) -> PostgresServer:
    if not postgres_instance.running:
        postgres_instance.start()
    return postgres_instance


@pytest.fixture
def postgres_url(postgres_live: PostgresServer) -> str:
    """A fresh, empty database of its own for this test."""
    return postgres_live.create_database("t_" + secrets.token_hex(6))
