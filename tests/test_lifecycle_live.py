"""The session follows FusionAuth, over real HTTP with the dev FusionAuth seeded from kickstart: its signed webhooks end
sessions at once, and two `stepup-bff serve` processes on one store refresh a session's tokens one at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from stepup_bff.ops.dev import authorize_bff_request, build_stack, default_kickstart
from support.dev_stack import KICKSTART_ENV, RunningStack, bff_processes, running_stack, sign_in_through_form
from support.live_server import free_port, serve

pytestmark = pytest.mark.live
CSRF = {"X-CSRF": "1"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[RunningStack]:
    with running_stack(tmp_path) as running:
        yield running


def _authenticated(browser: httpx.Client, url: str) -> bool:
    response = browser.get(f"{url}/api/session")
    assert response.status_code == 200, response.text
    return bool(response.json()["authenticated"])


def _signed_out(browser: httpx.Client, url: str) -> bool:
    """The effect runs just after the BFF has answered the webhook: wait for it (bounded), then say what is true."""
    deadline = time.monotonic() + 10
    while _authenticated(browser, url) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _authenticated(browser, url)


def _delivered(live: RunningStack, count: int) -> list[dict[str, object]]:
    """The dev FusionAuth's webhook log, once `count` deliveries have been answered."""
    deadline = time.monotonic() + 10
    while True:
        sent = httpx.get(f"{live.fusionauth_url}/_dev/webhooks", timeout=5).json()
        if len(sent) >= count and all(d["status"] is not None or d["error"] for d in sent):
            return list(sent)
        assert time.monotonic() < deadline, sent
        time.sleep(0.05)


def test_deactivating_a_user_at_fusionauth_ends_their_sessions_at_once(live: RunningStack) -> None:
    laptop, phone = live.sign_in("alice@example.com"), live.sign_in("alice@example.com")
    bob = live.sign_in("dave@example.com")
    try:
        user_id = live.stack.seed.user("alice@example.com").id
        assert live.admin("DELETE", f"/api/user/{user_id}").status_code == 200
        delivery = _delivered(live, 1)[0]
        assert (delivery["type"], delivery["status"]) == ("user.deactivate", 200)  # signed, verified, accepted
        assert _signed_out(laptop, live.stack.bff_url)
        assert _signed_out(phone, live.stack.bff_url)
        assert _authenticated(bob, live.stack.bff_url)
        events = bob.get(f"{live.stack.bff_url}/api/activity").json()["events"]
        assert all(e.get("reason") != "user_deactivated" for e in events)  # someone else's sessions only
    finally:
        for browser in (laptop, phone, bob):
            browser.close()


def test_revoking_a_users_refresh_tokens_at_fusionauth_ends_their_sessions(live: RunningStack) -> None:
    browser = live.sign_in("alice@example.com")
    try:
        user_id = live.stack.seed.user("alice@example.com").id
        assert live.admin("DELETE", "/api/jwt/refresh", userId=user_id).status_code == 200
        deliveries = _delivered(live, 1)
        assert deliveries[-1]["type"] == "jwt.refresh-token.revoke" and deliveries[-1]["status"] == 200
        assert _signed_out(browser, live.stack.bff_url)
    finally:
        browser.close()


def test_sign_out_everywhere_revokes_at_fusionauth_and_its_echo_is_harmless(live: RunningStack) -> None:
    laptop, phone = live.sign_in("alice@example.com"), live.sign_in("alice@example.com")
    try:
        response = laptop.delete(f"{live.stack.bff_url}/api/sessions", headers=CSRF)
        assert response.status_code == 200, response.text
        assert response.json()["refresh_tokens_revoked"] is True
        user_id = live.stack.seed.user("alice@example.com").id
        assert not [r for r in live.stack.fusionauth.directory.refresh_tokens.values() if r.user_id == user_id]
        assert not _authenticated(phone, live.stack.bff_url)
        # FusionAuth's webhooks about those revocations come back and find nothing left to end.
        assert all(d["status"] == 200 for d in _delivered(live, 1))
        again = live.sign_in("alice@example.com")
        assert _authenticated(again, live.stack.bff_url)
        again.close()
    finally:
        laptop.close()
        phone.close()


# -- single-flight across two processes -------------------------------------------------------------------------------


def test_two_serve_processes_on_one_store_never_present_a_rotated_refresh_token_twice(tmp_path: Path) -> None:
    """Access tokens live one second and refresh tokens are one-time-use: every request finds its token due for
    refresh, on either process. A second presentation of a spent refresh token would be refused (invalid_grant) and
    end the session; with the refresh single-flight through the shared store, none happens, however the requests
    interleave."""
    public_port, fusionauth_port = free_port(), free_port()
    stack = build_stack(
        bff_port=public_port,
        fusionauth_port=fusionauth_port,
        kickstart=default_kickstart(),
        storage_url=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        env=KICKSTART_ENV,
    )
    with serve(stack.fusionauth.app, port=fusionauth_port):
        with httpx.Client(timeout=5) as http:
            http.send(authorize_bff_request(stack)).raise_for_status()
            short = {"jwtConfiguration": {"timeToLiveInSeconds": 1, "refreshTokenUsagePolicy": "OneTimeUse"}}
            http.patch(
                f"{stack.settings.fusionauth.url}/api/application/{stack.seed.application.id}",
                headers={"Authorization": stack.seed.admin_api_key.key},
                json={"application": short},
            ).raise_for_status()
        logs = tmp_path / "logs"
        logs.mkdir()
        with bff_processes(stack.settings, [public_port, free_port()], logs) as (a, b):
            password = stack.seed.user("alice@example.com").password
            assert password
            browser = sign_in_through_form(a.url, stack.fusionauth_url, "alice@example.com", password)
            cookie = {"Cookie": "; ".join(f"{name}={value}" for name, value in browser.cookies.items())}

            async def burst() -> list[bool]:
                async with httpx.AsyncClient(timeout=30) as client:
                    answers = await asyncio.gather(
                        *(client.get(f"{url}/api/session", headers=cookie) for url in [a.url, b.url] * 12)
                    )
                return [bool(answer.json()["authenticated"]) for answer in answers]

            for _ in range(3):
                assert asyncio.run(burst()) == [True] * 24
            user_id = stack.seed.user("alice@example.com").id
            live_tokens = [r for r in stack.fusionauth.directory.refresh_tokens.values() if r.user_id == user_id]
            assert len(live_tokens) == 1  # rotated in turn: one chain, never forked
            logged = a.log.read_text() + b.log.read_text()
            assert "refresh_refused" not in logged and "refused the refresh token" not in logged
            browser.close()
