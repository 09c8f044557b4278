"""Regression tests from an adversarial review (2026-11-22). Each was written as a failing proof of concept
against the code of that day and asserts the secure behaviour that the fixes then put in place."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, FakeClock, make_settings, replace_cookie, sign_in, start_login
from support.asgi import call
from support.fake_fusionauth import TokenFactory
from support.step_up import confirm, confirm_transaction, unbound
from support.two_factor import VALID_CODE, FakeTwoFactor

TELEGRAM = {"recipient": "Bob", "message": "Happy birthday, sung by a baritone"}
COOKIE = "stepup_session"
ATTACKER_ID = "00000000-0000-0000-0000-0000000a77ac"


def post(client: TestClient, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers={**JSON_HEADERS, **headers})


def signed_in_with(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, **overrides: Any
) -> TestClient:
    client: TestClient = app_factory(make_settings(tmp_path, **overrides))
    assert sign_in(client, fusionauth, tokens).status_code == 303
    return client


# -- 1. per-user failure limit is check-then-act: concurrent finishes of successive challenges all get through ----


def test_per_user_failure_limit_holds_for_overlapping_finishes(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    """step_up.max_failures = 2: FusionAuth must never be asked to check more than 2 wrong codes in the window.

    The attacker (a stolen cookie, or the password without the second factor) pipelines start -> finish: each
    finish locks only its own challenge and reads the failure count before FusionAuth answers, so every finish
    started before the first 421 comes back passes the block check. The same works with N sessions in parallel."""
    client = signed_in_with(tmp_path, app_factory, fusionauth, tokens, step_up={"max_failures": 2})
    two_factor = FakeTwoFactor(fusionauth)
    entered = threading.Semaphore(0)

    async def slow_login(request: httpx.Request) -> httpx.Response:
        entered.release()
        await asyncio.sleep(0.5)  # FusionAuth's usual round trip, a little stretched
        return two_factor.login(request)

    fusionauth["two_factor_login"].side_effect = slow_login
    results: list[httpx.Response] = []
    threads = []
    for _ in range(6):
        start = post(client, "/api/step-up/start")
        if start.status_code == 429:  # blocked: the limit held
            assert start.json()["error"] == "step_up_blocked"
            break
        assert start.status_code == 200
        thread = threading.Thread(
            target=lambda: results.append(post(client, "/api/step-up/finish", {"code": "000000"}))
        )
        thread.start()
        threads.append(thread)
        # Wait until this finish is at FusionAuth (or was refused without reaching it), then start the next one.
        entered.acquire(timeout=1)
    for thread in threads:
        thread.join()

    guesses_checked = fusionauth["two_factor_login"].call_count
    assert guesses_checked <= 2, f"{guesses_checked} wrong codes were checked with max_failures=2"


# -- 2. resend cooldown and max_sends are per challenge: a fresh start resets both ---------------------------------


def test_restarting_the_challenge_does_not_reset_resend_limits(
    signed_in: TestClient, fusionauth: respx.MockRouter
) -> None:
    """README: 'a resend cooldown (30 s) and max_sends (3) per challenge ... neither an older cookie nor a fresh
    challenge resets it'. Today start -> send in a loop mails (or texts) the victim without limit."""
    two_factor = FakeTwoFactor(fusionauth)
    statuses = []
    for _ in range(10):
        assert post(signed_in, "/api/step-up/start").status_code == 200
        statuses.append(post(signed_in, "/api/step-up/send", {"method_id": "MAIL"}).status_code)

    assert statuses[1] == 429, statuses  # the 30 s cooldown must survive a restart
    assert len(two_factor.sent) <= 3, f"{len(two_factor.sent)} codes sent within one second"


# -- 3. no request-body limit, and the body is read before CSRF/auth/content-type checks ----------------------------


def test_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    """An anonymous, cross-site POST (no cookie, no X-CSRF) with a 32 MiB body: the app pulls every byte into memory
    (and JSON-parses it) before csrf_guard answers 403. A size limit must answer 413 after at most ~1 MiB."""
    total = 32 * 1024 * 1024  # one valid JSON document: {"recipient": "aaaa...(32 MiB)...a"}
    pieces = [b'{"recipient": "'] + [b"a" * 65536] * (total // 65536) + [b'"}']
    headers = [
        ("content-type", "application/json"),
        ("content-length", str(total + 17)),
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ]
    exchange = call(client, "POST", "/api/telegrams", headers=headers, body=pieces)

    status, pulled = exchange.status, exchange.pulled
    assert pulled <= 1024 * 1024, f"read {pulled / 2**20:.0f} MiB of an anonymous cross-site body (answered {status})"
    assert status == 413


# -- 4. a request still carrying a rotated-away session id deletes the fresh cookie ---------------------------------


def test_in_flight_request_with_the_pre_rotation_cookie_does_not_clear_the_new_cookie(
    signed_in: TestClient, fusionauth: respx.MockRouter
) -> None:
    """authlib #376 in step-up-anchors: a fetch sent just before /api/step-up/finish rotates the id is answered after
    it. Its answer says 'Set-Cookie: stepup_session=; Max-Age=0', which the browser applies after the finish's
    cookie: the person is signed out and the step-up they just did is gone."""
    FakeTwoFactor(fusionauth)
    before = signed_in.cookies[COOKIE]
    assert post(signed_in, "/api/step-up/start").status_code == 200
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200

    # The in-flight request went out with the old cookie (e.g. the SPA's GET /api/telegrams).
    late = signed_in.get("/api/telegrams", headers={"Cookie": f"{COOKIE}={before}"})

    clears = [h for h in late.headers.get_list("set-cookie") if h.startswith(f"{COOKIE}=;")]
    assert clears == [], "the late answer deletes the session cookie the finish just set"


# -- 5. the idle-timeout 'touch' re-creates a record that sign-out (or rotation) just deleted ----------------------


def test_touch_cannot_resurrect_a_signed_out_session(
    signed_in: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    """SessionManager.load() reads the record, then writes it back with INSERT OR REPLACE. A sign-out (or a
    step-up's rotation) landing between the two, e.g. while the write waits for SQLite's lock held by another
    worker, is undone: the old cookie works again. Sign-out must stick."""
    cookie = signed_in.cookies[COOKIE]
    store = signed_in.app_state["services"].store
    real_get = store.get
    paused = threading.Event()
    release = threading.Event()
    pause_next = [True]

    async def slow_get(key: str) -> str | None:
        value = await real_get(key)
        if key.startswith("session:") and pause_next[0]:
            pause_next[0] = False
            paused.set()
            while not release.is_set():  # the touch's write is delayed (lock contention, a busy worker thread)
                await asyncio.sleep(0.01)
        return value

    store.get = slow_get
    clock.advance(120)  # a touch is due

    toucher = threading.Thread(target=lambda: signed_in.get("/api/telegrams", headers={"Cookie": f"{COOKIE}={cookie}"}))
    toucher.start()
    assert paused.wait(5)
    logout = post(signed_in, "/auth/logout")  # the person signs out meanwhile
    assert logout.status_code == 200
    release.set()
    toucher.join()
    store.get = real_get

    replace_cookie(signed_in, COOKIE, cookie)  # a copy of the old cookie (the stolen one)
    assert signed_in.get("/api/session").json()["authenticated"] is False, "signed-out session came back to life"


# -- 6. an Idempotency-Key reused with a different body silently returns another telegram ---------------------------


def test_idempotency_key_reused_with_a_different_body_is_rejected(
    signed_in: TestClient, fusionauth: respx.MockRouter
) -> None:
    """draft-ietf-httpapi-idempotency-key-header: reuse with a different payload SHOULD be 422. Today the caller is
    told 200 with a telegram to someone else and believes its new telegram went out."""
    FakeTwoFactor(fusionauth)
    first = confirm(signed_in, TELEGRAM, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    other = post(signed_in, "/api/telegrams", {"recipient": "Carol", "message": "Sorry"}, **{"Idempotency-Key": "k-1"})
    assert other.status_code == 422, f"{other.status_code}: {other.json()}"


# -- 7. single-use grant: a request the route refuses for its input still burns the step-up -------------------------


def test_single_use_grant_survives_an_invalid_idempotency_key(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    """authorize() promises 'a request refused for its input did nothing, so it must not cost the person their
    step-up', but only RequestValidationError gives the grant back; the route's own InvalidRequest does not."""
    client = signed_in_with(tmp_path, app_factory, fusionauth, tokens, step_up=unbound(single_use=True))
    FakeTwoFactor(fusionauth)
    post(client, "/api/step-up/start")
    assert post(client, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200

    refused = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "tab\there"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert post(client, "/api/telegrams", TELEGRAM).status_code == 201


def test_bound_grant_survives_an_invalid_idempotency_key(signed_in: TestClient, fusionauth: respx.MockRouter) -> None:
    """The same for a grant bound to its telegram: a bad header is refused before the guard touches the grant."""
    FakeTwoFactor(fusionauth)
    assert confirm_transaction(signed_in, post(signed_in, "/api/telegrams", TELEGRAM)).status_code == 200
    refused = post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "tab\there"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"
    assert post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k-9"}).status_code == 201


# -- 8. tokens without `aud`: now a case of tests/test_sign_in.py::test_bad_id_token_claims_are_refused --------------

# -- 9. login-state cookie is __Secure- (not __Host-): a sibling subdomain can plant one --------------------------


def test_login_state_cookie_cannot_be_planted_by_a_sibling_subdomain(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    """csrf.py treats sibling subdomains as hostile, but `__Secure-stepup_login_*` may be set with Domain=example.com
    by evil.example.com. The attacker starts a sign-in, keeps its (BFF-signed) cookie, signs in to FusionAuth as
    themself, plants the cookie in the victim's browser and sends the victim to /auth/callback?code&state: the
    victim is now signed in to the attacker's account (login CSRF). Only a __Host- cookie cannot be planted."""
    settings = make_settings(tmp_path, public_url="https://app.example.com")
    attacker: TestClient = app_factory(settings)
    attacker.base_url = httpx.URL("https://app.example.com")
    login = start_login(attacker)  # the attacker's own sign-in; they keep its cookie and state
    planted = next(c for c in attacker.cookies.jar if "stepup_login_" in c.name)

    victim: TestClient = app_factory(settings)
    victim.base_url = httpx.URL("https://app.example.com")
    # evil.example.com answers the victim with `Set-Cookie: <name>=<value>; Domain=example.com; Path=/auth/; Secure`.
    # Browsers accept that for a __Secure- name and refuse it for a __Host- name; model exactly that.
    if not planted.name.startswith("__Host-"):
        victim.cookies.set(planted.name, planted.value or "", domain=".example.com", path="/auth/")
    # The attacker signed in to FusionAuth as themself; the code is bound to the attacker's PKCE challenge and nonce.
    fusionauth["token"].respond(json=tokens.token_response(nonce=login.nonce, sub=ATTACKER_ID))
    victim.get("/auth/callback", params={"code": "attackers-code", "state": login.state})

    session = victim.get("/api/session").json()
    assert session.get("user", {}).get("id") != ATTACKER_ID, "the victim is signed in to the attacker's account"


# -- 10. log forging through the callback's `error` parameter -----------------------------------------------------


def test_callback_error_parameter_cannot_forge_log_lines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """Anyone (no cookie needed) can write CR/LF into the BFF's log through /auth/callback?error=, and the log format
    is one line per event, so the next line can pose as 'signed in' or 'step-up completed'."""
    caplog.set_level(logging.INFO)
    forged = "x\n2026-01-01 00:00:00,000 INFO    stepup_bff: signed in"
    client.get("/auth/callback", params={"error": forged})
    assert all("\n" not in record.getMessage() and "\r" not in record.getMessage() for record in caplog.records)


# -- 11. the per-user window resets forever: no cap on consecutive failures ---------------------------------------


def test_consecutive_failures_are_capped(signed_in: TestClient, fusionauth: respx.MockRouter, clock: FakeClock) -> None:
    """step_up.py cites NIST 800-63B 5.2.2, which caps *consecutive* failures on an account at 100. The fixed 15-min
    window restores 10 guesses every window, forever: 960 guesses a day with no success in between."""
    FakeTwoFactor(fusionauth)
    failures = 0
    for _ in range(11):  # 11 windows x 10 wrong codes = 110 consecutive failures
        for _ in range(2):
            if post(signed_in, "/api/step-up/start").status_code != 200:
                break
            for _ in range(5):
                answer = post(signed_in, "/api/step-up/finish", {"code": "000000"})
                if answer.status_code in (400, 429) and answer.json()["error"] in ("invalid_code", "step_up_blocked"):
                    failures += 1
                if answer.status_code == 429 or answer.json().get("attempts_remaining") == 0:
                    break
        clock.advance(901)
    assert failures <= 100, f"{failures} consecutive wrong codes were checked"
