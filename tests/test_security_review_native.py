"""Security review of native sign-in (auth/native_login.py, auth/guessing.py): attacks on the guessing limits.

The client address arrives through a trusted proxy's X-Forwarded-For (server.forwarded_allow_ips; the test client's
peer is "testclient"), as it would in production.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import API_KEY, JSON_HEADERS, make_settings
from support.fake_fusionauth import TokenFactory
from support.native_login import ALICE, BOB, FakeLogin


@pytest.fixture
def accounts(fusionauth: respx.MockRouter, tokens: TokenFactory) -> FakeLogin:
    return FakeLogin(fusionauth, tokens, API_KEY)


@pytest.fixture
def behind_proxy(app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter) -> TestClient:
    settings = make_settings(
        tmp_path,
        login={"native": True, "max_failures_per_login_id": 100, "max_failures_per_address": 5},
        server={"forwarded_allow_ips": "testclient"},
    )
    client: TestClient = app_factory(settings)
    return client


def guess(client: TestClient, address: str, login_id: str, password: str = "wrong") -> httpx.Response:
    return client.post(
        "/auth/native/login",
        json={"login_id": login_id, "password": password},
        headers={**JSON_HEADERS, "X-Forwarded-For": address},
    )


def test_one_ipv6_subnet_shares_one_budget(
    behind_proxy: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    # Anyone with IPv6 has a /64 at least: 2^64 addresses to send each guess from. Counted per address, the
    # per-address limit would never be reached.
    for index in range(5):
        assert guess(behind_proxy, f"2001:db8:1:2::{index + 1:x}", f"user{index}@example.com").status_code == 401

    refused = guess(behind_proxy, "2001:db8:1:2:ffff:ffff:ffff:ffff", "user9@example.com")

    assert (refused.status_code, refused.json()["error"]) == (429, "too_many_attempts")
    assert fusionauth["login"].call_count == 5
    # Another /64 has its own budget, and FusionAuth still hears each browser's own address.
    assert guess(behind_proxy, "2001:db8:1:3::1", BOB.email, "correct horse battery staple").status_code == 200
    assert json.loads(fusionauth["login"].calls.last.request.content)["ipAddress"] == "2001:db8:1:3::1"


def test_an_ipv4_client_seen_as_ipv4_mapped_ipv6_shares_its_budget(
    behind_proxy: TestClient, fusionauth: respx.MockRouter, accounts: FakeLogin
) -> None:
    # A dual-stack listener or proxy writes an IPv4 client as ::ffff:a.b.c.d; it is the same client.
    for index in range(5):
        address = "192.0.2.7" if index % 2 else "::ffff:192.0.2.7"
        assert guess(behind_proxy, address, f"user{index}@example.com").status_code == 401

    assert guess(behind_proxy, "192.0.2.7", ALICE.email).status_code == 429
    assert guess(behind_proxy, "192.0.2.8", ALICE.email).status_code == 401  # the neighbour is not
