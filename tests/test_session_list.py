"""The person's own sessions: GET /api/sessions, DELETE /api/sessions/{id} (one of them) and DELETE /api/sessions
("sign out everywhere", which also revokes their refresh tokens for this application at FusionAuth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import API_KEY, JSON_HEADERS, make_settings, sign_in
from stepup_bff.ops.metrics import Metrics
from support.fake_fusionauth import APPLICATION_ID, OTHER_USER_ID, USER_ID, TokenFactory
from support.metrics import sample_value

COOKIE = "stepup_session"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    return make_settings(tmp_path)


def _browser(
    app_factory: Any,
    settings: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    *,
    agent: str = FIREFOX,
    sub: str = USER_ID,
    metrics: Metrics | None = None,
) -> TestClient:
    browser: TestClient = app_factory(settings, metrics, headers={"User-Agent": agent})
    assert sign_in(browser, fusionauth, tokens, sub=sub).status_code == 303
    return browser


def _listed(browser: TestClient) -> list[dict[str, Any]]:
    response = browser.get("/api/sessions")
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


def _authenticated(browser: TestClient) -> bool:
    return bool(browser.get("/api/session").json()["authenticated"])


def test_the_list_shows_every_session_of_mine_and_marks_this_one(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens, agent=FIREFOX)
    phone = _browser(app_factory, settings, fusionauth, tokens, agent=SAFARI)
    _browser(app_factory, settings, fusionauth, tokens, sub=OTHER_USER_ID)  # someone else's
    listed = _listed(laptop)
    assert [(s["agent"], s["current"]) for s in listed] == [("Firefox on Linux", True), ("Safari on iOS", False)]
    assert {s["address"] for s in listed} == {"testclient"}
    assert set(listed[0]) == {"id", "created_at", "last_seen_at", "agent", "address", "current"}
    assert [s["current"] for s in _listed(phone)] == [True, False]
    # The ids are not the cookies' session ids, nor anything of the cookie.
    for browser in (laptop, phone):
        assert all(s["id"] not in browser.cookies[COOKIE] for s in listed)


def test_the_list_needs_a_session(client: TestClient) -> None:
    response = client.get("/api/sessions")
    assert response.status_code == 401 and response.json()["error"] == "login_required"


def test_ending_another_of_my_sessions(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens, metrics=metrics)
    phone = _browser(app_factory, settings, fusionauth, tokens, agent=SAFARI)
    (other,) = [s for s in _listed(laptop) if not s["current"]]
    response = laptop.delete(f"/api/sessions/{other['id']}", headers=JSON_HEADERS)
    assert response.status_code == 204
    assert not _authenticated(phone) and _authenticated(laptop)
    assert fusionauth["revoke"].call_count == 1  # the phone's refresh token, by the end hook
    assert [s["current"] for s in _listed(laptop)] == [True]
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="signed_out_elsewhere") == 1
    again = laptop.delete(f"/api/sessions/{other['id']}", headers=JSON_HEADERS)
    assert again.status_code == 404


def test_ending_this_session_from_the_list_signs_out_and_clears_the_cookie(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens)
    (this,) = _listed(laptop)
    response = laptop.delete(f"/api/sessions/{this['id']}", headers=JSON_HEADERS)
    assert response.status_code == 204
    assert any(h.startswith(f"{COOKIE}=;") for h in response.headers.get_list("set-cookie"))
    assert not _authenticated(laptop)


def test_another_persons_session_id_is_not_found_and_left_alone(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    mine = _browser(app_factory, settings, fusionauth, tokens)
    theirs = _browser(app_factory, settings, fusionauth, tokens, sub=OTHER_USER_ID)
    (their_session,) = _listed(theirs)
    for session_id in (their_session["id"], "no-such-session", "x" * 64):
        response = mine.delete(f"/api/sessions/{session_id}", headers=JSON_HEADERS)
        assert response.status_code == 404, session_id
    assert _authenticated(theirs)
    assert mine.delete("/api/sessions/" + "x" * 65, headers=JSON_HEADERS).status_code == 400


@pytest.mark.parametrize("path", ["/api/sessions", "/api/sessions/some-id"])
def test_ending_sessions_follows_the_csrf_and_empty_body_rules(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, path: str
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens)
    assert laptop.delete(path).status_code == 403  # no X-CSRF
    assert laptop.delete(path, headers={**JSON_HEADERS, "Origin": "https://evil.example"}).status_code == 403
    refused = laptop.request(
        "DELETE", path, headers={**JSON_HEADERS, "Content-Type": "application/json"}, content=b"[]"
    )
    assert refused.status_code == 400
    assert _authenticated(laptop)
    assert not fusionauth["revoke_user"].called


def test_sign_out_everywhere_ends_every_session_and_revokes_the_refresh_tokens_at_fusionauth(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens, metrics=metrics)
    phone = _browser(app_factory, settings, fusionauth, tokens, agent=SAFARI)
    theirs = _browser(app_factory, settings, fusionauth, tokens, sub=OTHER_USER_ID)
    response = laptop.delete("/api/sessions", headers=JSON_HEADERS)
    assert response.status_code == 200
    body = response.json()
    assert (body["ended"], body["refresh_tokens_revoked"]) == (2, True)
    assert body["redirect"].startswith("http://localhost:9011/oauth2/logout?client_id=")
    assert any(h.startswith(f"{COOKIE}=;") for h in response.headers.get_list("set-cookie"))
    assert not _authenticated(laptop) and not _authenticated(phone)
    assert _authenticated(theirs)
    revoke = fusionauth["revoke_user"].calls.last.request
    assert dict(revoke.url.params) == {"userId": USER_ID, "applicationId": APPLICATION_ID}
    assert revoke.headers["authorization"] == API_KEY
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="sign_out") == 1
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason="signed_out_elsewhere") == 1


@pytest.mark.parametrize("failure", [httpx.ConnectError("down"), httpx.Response(500), httpx.Response(401)])
def test_sign_out_everywhere_still_ends_the_sessions_when_fusionauth_fails(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, failure: Any
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens)
    phone = _browser(app_factory, settings, fusionauth, tokens)
    fusionauth["revoke_user"].mock(side_effect=[failure])
    response = laptop.delete("/api/sessions", headers=JSON_HEADERS)
    assert response.status_code == 200
    assert response.json()["refresh_tokens_revoked"] is False
    assert not _authenticated(laptop) and not _authenticated(phone)


def test_sign_out_everywhere_records_each_end_in_the_activity_log(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    laptop = _browser(app_factory, settings, fusionauth, tokens)
    _browser(app_factory, settings, fusionauth, tokens)
    assert laptop.delete("/api/sessions", headers=JSON_HEADERS).status_code == 200
    again = _browser(app_factory, settings, fusionauth, tokens)
    events = again.get("/api/activity").json()["events"]
    kinds = [(e["kind"], e.get("reason")) for e in events[:3]]
    assert ("sign_out", None) in kinds and ("session_ended", "signed_out_elsewhere") in kinds
