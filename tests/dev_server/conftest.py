"""Fixtures for the dev server's tests: the repository's kickstart files, a manual clock, an in-process client."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from fusionauth_dev import DevServer, ManualClock, Seed, create_dev_server

ROOT = Path(__file__).resolve().parents[2]
KICKSTART = ROOT / "kickstart" / "kickstart.json"
EMAIL_OVERLAY = ROOT / "kickstart" / "email-mfa.json"
ENV = {
    "FUSIONAUTH_ADMIN_API_KEY": "test-admin-key-0123456789",
    "FUSIONAUTH_BFF_API_KEY": "test-bff-key-0123456789",
    "FUSIONAUTH_CLIENT_SECRET": "test-client-secret-0123456789",
    "BFF_WEBHOOK_URL": "http://localhost:9000/webhooks/fusionauth",
}
ADMIN_KEY = ENV["FUSIONAUTH_ADMIN_API_KEY"]
BFF_KEY = ENV["FUSIONAUTH_BFF_API_KEY"]
CLIENT_SECRET = ENV["FUSIONAUTH_CLIENT_SECRET"]
APPLICATION_ID = "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
TENANT_ID = "d7d09513-a3f5-401c-9685-34ab6c552453"
REDIRECT_URI = "http://localhost:9000/auth/callback"
PASSWORD = "stepup-demo"
# A fixed instant in the middle of a 30-second TOTP step.
START = 1_700_000_010.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def server(clock: ManualClock) -> DevServer:
    return create_dev_server([KICKSTART, EMAIL_OVERLAY], env=ENV, clock=clock)


@pytest.fixture
def seed(server: DevServer) -> Seed:
    return server.seed()


@pytest.fixture
def client(server: DevServer) -> Iterator[TestClient]:
    with TestClient(server.app, follow_redirects=False) as test_client:
        yield test_client


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def new_pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return Pkce(verifier, challenge)


def authorize_params(pkce: Pkce, **overrides: str) -> dict[str, str]:
    params = {
        "client_id": APPLICATION_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid offline_access profile email",
        "state": "state-123",
        "nonce": "nonce-456",
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return params


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def sign_in(client: TestClient, pkce: Pkce, login_id: str = "dave@example.com", **overrides: str) -> dict[str, str]:
    """POST the hosted login form; returns the redirect's query (code, state, userState ...)."""
    form = {**authorize_params(pkce, **overrides), "loginId": login_id, "password": PASSWORD}
    response = client.post("/oauth2/authorize", data=form)
    assert response.status_code == 302, response.text
    return query_of(response.headers["location"])


def code_grant(code: str, pkce: Pkce, **overrides: str) -> dict[str, str]:
    """The token request form that redeems ``code``."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": pkce.verifier,
    }
    form.update(overrides)
    return form


def exchange(client: TestClient, code: str, pkce: Pkce) -> dict[str, object]:
    response = client.post("/oauth2/token", data=code_grant(code, pkce), auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def assert_dev_page(response: Response) -> str:
    """A page the dev server renders: 200 HTML without script, kept out of search engines, saying it is not
    FusionAuth. Returns the HTML."""
    assert response.status_code == 200
    html = response.text
    assert "<script" not in html
    assert '<meta name="robots" content="noindex">' in html
    assert "not FusionAuth" in html
    return html
