"""The session cookie and its server-side record: tampering, foreign keys, timeouts, sign-out, key rotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer

from conftest import JSON_HEADERS, SECRET_KEY, FakeClock, make_settings, replace_cookie, sign_in
from stepup_bff.settings import Settings
from stepup_bff.web.cookies import make_serializer
from support.backends import RedisServer
from support.fake_fusionauth import USER_ID, TokenFactory

COOKIE = "stepup_session"


def _authenticated(client: TestClient) -> bool:
    response = client.get("/api/session")
    assert response.status_code == 200
    return bool(response.json()["authenticated"])


def test_tampered_cookie_is_anonymous_and_cleared(signed_in: TestClient) -> None:
    value = signed_in.cookies[COOKIE]
    middle = len(value) // 2
    replace_cookie(signed_in, COOKIE, value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1 :])
    response = signed_in.get("/api/session")
    assert response.json()["authenticated"] is False
    assert any(h.startswith(f"{COOKIE}=;") and "Max-Age=0" in h for h in response.headers.get_list("set-cookie"))


def test_cookie_signed_with_a_foreign_key_is_refused(signed_in: TestClient) -> None:
    original = URLSafeTimedSerializer([SECRET_KEY], salt="stepup-bff/session").loads_unsafe(signed_in.cookies[COOKIE])[
        1
    ]
    forged = URLSafeTimedSerializer(["x" * 40], salt="stepup-bff/session").dumps(original)
    replace_cookie(signed_in, COOKIE, forged)
    assert not _authenticated(signed_in)


def test_cookie_naming_another_user_is_refused(signed_in: TestClient, settings: Settings, clock: FakeClock) -> None:
    serializer = make_serializer(settings.session.secret_keys, salt="stepup-bff/session", clock=clock)
    payload = serializer.loads(signed_in.cookies[COOKIE])
    # Even with the signing key, a cookie that swaps the user id for another is refused by the record check.
    payload["uid"] = "someone-else"
    replace_cookie(signed_in, COOKIE, serializer.dumps(payload))
    assert not _authenticated(signed_in)


def test_login_state_cookie_cannot_pass_as_a_session(
    signed_in: TestClient, settings: Settings, clock: FakeClock
) -> None:
    # Same keys, different salt: a value minted for one cookie kind never verifies as another.
    login_serializer = make_serializer(settings.session.secret_keys, salt="stepup-bff/login", clock=clock)
    session_serializer = make_serializer(settings.session.secret_keys, salt="stepup-bff/session", clock=clock)
    payload = session_serializer.loads(signed_in.cookies[COOKIE])
    replace_cookie(signed_in, COOKIE, login_serializer.dumps(payload))
    assert not _authenticated(signed_in)


def test_old_cookie_replayed_after_sign_out_is_worthless(signed_in: TestClient) -> None:
    stolen = signed_in.cookies[COOKIE]
    assert signed_in.post("/auth/logout", headers=JSON_HEADERS).status_code == 200
    replace_cookie(signed_in, COOKIE, stolen)
    assert not _authenticated(signed_in)


def test_idle_timeout(signed_in: TestClient, clock: FakeClock) -> None:
    clock.advance(1799)
    assert _authenticated(signed_in)  # activity resets the idle clock
    clock.advance(1799)
    assert _authenticated(signed_in)
    clock.advance(1800)
    assert not _authenticated(signed_in)


def test_absolute_timeout_despite_activity(signed_in: TestClient, clock: FakeClock) -> None:
    for _ in range(43200 // 1500 - 1):
        clock.advance(1500)
        assert _authenticated(signed_in)
    clock.advance(43200 - (43200 // 1500 - 1) * 1500)
    assert not _authenticated(signed_in)


def test_session_reports_expiry_times(signed_in: TestClient, clock: FakeClock) -> None:
    from stepup_bff.clock import iso

    body = signed_in.get("/api/session").json()
    assert body["signed_in_at"] == iso(clock.now())
    assert body["expires_at"] == iso(clock.now() + 43200)
    assert body["idle_expires_at"] == iso(clock.now() + 1800)


def test_key_rotation_old_cookies_still_verify(
    tmp_path: Path, app_factory: object, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    old_settings = make_settings(tmp_path)
    client: TestClient = app_factory(old_settings)  # type: ignore[operator]
    assert sign_in(client, fusionauth, tokens).status_code == 303
    cookie = client.cookies[COOKIE]

    # Same store, new signing key first, old key kept for verification.
    new_key = "n" * 40
    rotated = make_settings(tmp_path, session={"secret_keys": [new_key, SECRET_KEY]})
    client2: TestClient = app_factory(rotated)  # type: ignore[operator]
    replace_cookie(client2, COOKIE, cookie)
    assert _authenticated(client2)

    # Once the old key is removed, cookies signed by it stop working.
    retired = make_settings(tmp_path, session={"secret_keys": [new_key]})
    client3: TestClient = app_factory(retired)  # type: ignore[operator]
    replace_cookie(client3, COOKIE, cookie)
    assert not _authenticated(client3)


def test_new_sign_in_replaces_the_previous_session(
    signed_in: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    first = signed_in.cookies[COOKIE]
    assert sign_in(signed_in, fusionauth, tokens).status_code == 303
    second = signed_in.cookies[COOKIE]
    assert first != second
    assert fusionauth["revoke"].call_count == 1  # the replaced session's refresh token
    replace_cookie(signed_in, COOKIE, first)
    assert not _authenticated(signed_in)


def test_sign_out_survives_a_failed_revocation(signed_in: TestClient, fusionauth: respx.MockRouter) -> None:
    fusionauth["revoke"].mock(side_effect=httpx.ConnectError("down"))
    cookie = signed_in.cookies[COOKIE]
    response = signed_in.post("/auth/logout", headers=JSON_HEADERS)
    assert response.status_code == 200
    assert "redirect" in response.json()
    replace_cookie(signed_in, COOKIE, cookie)
    assert not _authenticated(signed_in)


def test_sign_out_without_a_session_is_harmless(client: TestClient, fusionauth: respx.MockRouter) -> None:
    response = client.post("/auth/logout", headers=JSON_HEADERS)
    assert response.status_code == 200
    assert not fusionauth["revoke"].called


def test_session_endpoint_for_strangers(client: TestClient) -> None:
    assert client.get("/api/session").json() == {"authenticated": False, "sign_in": ["hosted"]}


def test_user_id_comes_from_the_verified_token(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    assert sign_in(client, fusionauth, tokens, sub=USER_ID).status_code == 303
    assert client.get("/api/session").json()["user"]["id"] == USER_ID


def test_a_timed_out_session_has_its_refresh_token_revoked(
    signed_in: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    issued = fusionauth["token"].calls.last.response.json()["refresh_token_id"]
    clock.advance(1800)
    assert not _authenticated(signed_in)
    assert fusionauth["revoke"].call_count == 1
    assert fusionauth["revoke"].calls.last.request.url.path == f"/api/jwt/refresh/{issued}"
    assert not _authenticated(signed_in)  # noticed once, revoked once
    assert fusionauth["revoke"].call_count == 1


@pytest.mark.live
def test_an_authenticated_read_is_one_redis_round_trip(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, redis_live: RedisServer
) -> None:
    client: TestClient = app_factory(make_settings(tmp_path, storage={"url": redis_live.url}))
    assert sign_in(client, fusionauth, tokens).status_code == 303
    admin = redis_live.client()
    admin.config_resetstat()
    assert _authenticated(client)
    stats = admin.info("commandstats")
    # One GET of the sealed record; nothing else (no touch yet: it is due once a minute).
    assert {name: stat["calls"] for name, stat in stats.items() if not name.startswith("cmdstat_config")} == {
        "cmdstat_get": 1
    }
