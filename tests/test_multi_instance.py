"""Two BFF processes (`stepup-bff serve`) of one deployment, sharing one real Redis and one real PostgreSQL, with the
dev FusionAuth: every property that must hold across instances, proven over HTTP.

Instance A listens on the deployment's public port (where FusionAuth sends browsers back), B on another; both have
the same settings, as replicas behind a load balancer do. Cookies are host-only for `localhost`, so the test's
browser sends the same cookie to both, as it would through the load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg
import pytest

from stepup_bff.ops.dev import DevStack, build_stack, default_kickstart
from support.backends import PostgresServer, RedisServer
from support.dev_stack import KICKSTART_ENV, RunningStack, bff_processes, settings_environment, sign_in_through_form
from support.live_server import free_port, serve

pytestmark = pytest.mark.live
CSRF = {"X-CSRF": "1"}
COOKIE = "stepup_session"
TELEGRAM = {"recipient": "Bob", "message": "Happy birthday"}


@pytest.fixture(scope="module")
def fusionauth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    """The dev FusionAuth, configured from the kickstart; each deployment below adds its own redirect URLs."""
    public_port, fusionauth_port = free_port(), free_port()
    stack = build_stack(
        bff_port=public_port,
        fusionauth_port=fusionauth_port,
        kickstart=default_kickstart(),
        # Replaced for the instances below: they use Redis and PostgreSQL.
        storage_url=f"sqlite:///{tmp_path_factory.mktemp('unused') / 'unused.sqlite3'}",
        env=KICKSTART_ENV,
    )
    admin = {"Authorization": stack.seed.admin_api_key.key}
    with serve(stack.fusionauth.app, port=fusionauth_port):
        with httpx.Client(timeout=5) as http:
            # The kickstart has FusionAuth lock an account after 5 wrong codes a minute; the BFF's own limits are
            # what these tests count, so this tenant allows more (as an operator may configure it).
            http.patch(
                f"{stack.settings.fusionauth.url}/api/tenant/{stack.seed.tenant_id}",
                headers=admin,
                json={"tenant": {"failedAuthenticationConfiguration": {"tooManyAttempts": 1000}}},
            ).raise_for_status()
        yield stack


@dataclass
class Deployment:
    stack: DevStack
    a: str
    b: str
    redis: RedisServer
    postgres: PostgresServer
    database_url: str
    browsers: list[httpx.Client] = field(default_factory=list)

    @property
    def people(self) -> RunningStack:
        return RunningStack(self.stack, self.a, self.stack.fusionauth_url)

    def sign_in(self, login_id: str, *, start_on: str | None = None, come_back_to: str | None = None) -> httpx.Client:
        browser = sign_in_through_form(
            start_on or self.a, self.stack.fusionauth_url, login_id, self.people.password, callback_url=come_back_to
        )
        self.browsers.append(browser)
        return browser

    def step_up(self, browser: httpx.Client, *, start_on: str, finish_on: str) -> None:
        assert browser.post(f"{start_on}/api/step-up/start", json={}, headers=CSRF).status_code == 200
        code = self.people.totp_code("alice@example.com")
        finish = browser.post(f"{finish_on}/api/step-up/finish", json={"code": code}, headers=CSRF)
        assert finish.status_code == 200, finish.text

    def user_id(self, browser: httpx.Client) -> str:
        return str(browser.get(f"{self.a}/api/session").json()["user"]["id"])

    def telegrams(self, idempotency_key: str | None = None) -> int:
        with psycopg.connect(self.database_url) as conn:
            if idempotency_key is None:
                row = conn.execute("SELECT count(*) FROM telegrams").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM telegrams WHERE idempotency_key = %s", (idempotency_key,)
                ).fetchone()
            assert row is not None
            return int(row[0])

    def close_browsers(self) -> None:
        for browser in self.browsers:
            browser.close()
        self.browsers.clear()


Deploy = Callable[..., contextlib.AbstractContextManager[Deployment]]


def _no_telegrams(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Before the first deployment has migrated the database there is nothing to empty.
        conn.execute("DO $$ BEGIN IF to_regclass('telegrams') IS NOT NULL THEN TRUNCATE telegrams; END IF; END $$")


@pytest.fixture(scope="module")
def database_url(postgres_instance: PostgresServer) -> str:
    return postgres_instance.create_database("multi_instance")


@pytest.fixture(scope="module")
def deploy(
    fusionauth: DevStack,
    redis_instance: RedisServer,
    postgres_instance: PostgresServer,
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Deploy:
    """Start instances A and B with the given STEPUP_* variables on top of the shared settings."""

    callbacks: list[str] = []

    @contextlib.contextmanager
    def start(**env: str) -> Iterator[Deployment]:
        # Each deployment its own public origin (instance A's), which FusionAuth must know as a redirect URL.
        public_port = free_port()
        public_url = f"http://localhost:{public_port}"
        callbacks.extend([f"{public_url}/auth/callback", f"{public_url}/"])
        httpx.patch(
            f"{fusionauth.settings.fusionauth.url}/api/application/{fusionauth.seed.application.id}",
            headers={"Authorization": fusionauth.seed.admin_api_key.key},
            json={"application": {"oauthConfiguration": {"authorizedRedirectURLs": callbacks}}},
            timeout=5,
        ).raise_for_status()
        shared = {
            "STEPUP_PUBLIC_URL": public_url,
            "STEPUP_STORAGE__URL": redis_instance.url,
            "STEPUP_STORAGE__TIMEOUT": "1.0",
            "STEPUP_STORAGE__CONNECT_TIMEOUT": "0.5",
            "STEPUP_DATABASE__URL": database_url,
            "STEPUP_DATABASE__TIMEOUT": "2.0",
            "STEPUP_DATABASE__CONNECT_TIMEOUT": "2.0",
            "STEPUP_LOG_LEVEL": "warning",
            **env,
        }
        # An earlier test may have stopped either server (and its own fixtures restart them only for itself).
        if redis_instance.process is None:
            redis_instance.start()
        if not postgres_instance.running:
            postgres_instance.start()
        _no_telegrams(database_url)
        logs = tmp_path_factory.mktemp("bff-logs")
        with bff_processes(fusionauth.settings, [public_port, free_port()], logs, shared) as (a, b):
            deployment = Deployment(fusionauth, a.url, b.url, redis_instance, postgres_instance, database_url)
            try:
                yield deployment
            finally:
                deployment.close_browsers()

    return start


# The tests of the time window run with send_telegram unbound; test_a_bound_confirmation_... has the default.
UNBOUND = {"STEPUP_STEP_UP__ACTIONS__SEND_TELEGRAM__BIND_TRANSACTION": "false"}


@pytest.fixture(scope="module")
def default_deployment(deploy: Deploy) -> Iterator[Deployment]:
    """One pair of instances with the default limits, shared by the tests below (starting two processes is slow)."""
    with deploy(**UNBOUND) as deployment:
        yield deployment


@pytest.fixture
def deployment(
    default_deployment: Deployment, redis_live: RedisServer, postgres_live: PostgresServer
) -> Iterator[Deployment]:
    """The shared pair, with an empty Redis (redis_live), a running PostgreSQL and no telegrams."""
    _no_telegrams(default_deployment.database_url)
    yield default_deployment
    default_deployment.close_browsers()


def _session(browser: httpx.Client, url: str) -> httpx.Response:
    return browser.get(f"{url}/api/session")


def _authenticated(browser: httpx.Client, url: str) -> bool:
    response = _session(browser, url)
    assert response.status_code == 200, response.text
    return bool(response.json()["authenticated"])


def _concurrently(requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send all requests at once (method, url, httpx keyword arguments) and return the answers in order."""

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as client:
            return list(await asyncio.gather(*(client.request(m, u, **kw) for m, u, kw in requests)))

    return asyncio.run(run())


# -- sessions ----------------------------------------------------------------------------------------------------


def test_a_session_made_on_a_is_valid_on_b_and_sign_out_on_either_ends_it_on_both(
    deployment: Deployment,
) -> None:
    # Sign-in started on A and finished on B: the login state's single use is shared too.
    first = deployment.sign_in("alice@example.com", start_on=deployment.a, come_back_to=deployment.b)
    on_a, on_b = _session(first, deployment.a).json(), _session(first, deployment.b).json()
    assert on_a["authenticated"] is True
    # The same record and the same settings: the same idle and absolute expiry, whichever instance answers.
    assert on_a == on_b

    second = deployment.sign_in("carol@example.com")
    assert first.post(f"{deployment.b}/auth/logout", headers=CSRF).status_code == 200
    assert not _authenticated(first, deployment.a) and not _authenticated(first, deployment.b)
    assert second.post(f"{deployment.a}/auth/logout", headers=CSRF).status_code == 200
    assert not _authenticated(second, deployment.b) and not _authenticated(second, deployment.a)


def test_the_idle_timeout_ends_a_session_on_both_at_once(deploy: Deploy, redis_live: RedisServer) -> None:
    with deploy(STEPUP_SESSION__IDLE_TIMEOUT="3", STEPUP_SESSION__ABSOLUTE_TIMEOUT="3") as deployment:
        browser = deployment.sign_in("alice@example.com")
        signed_in = time.monotonic()
        assert _authenticated(browser, deployment.b)
        time.sleep(max(0.0, signed_in + 3.3 - time.monotonic()))
        assert not _authenticated(browser, deployment.a)
        assert not _authenticated(browser, deployment.b)


# -- step-up -------------------------------------------------------------------------------------------------------


def test_a_step_up_completed_on_a_authorizes_the_privileged_request_on_b(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    assert browser.post(f"{deployment.b}/api/telegrams", json=TELEGRAM, headers=CSRF).status_code == 401
    deployment.step_up(browser, start_on=deployment.b, finish_on=deployment.a)
    sent = browser.post(f"{deployment.b}/api/telegrams", json=TELEGRAM, headers=CSRF)
    assert sent.status_code == 201, sent.text
    listed = browser.get(f"{deployment.a}/api/telegrams").json()["telegrams"]
    assert [telegram["id"] for telegram in listed] == [sent.json()["id"]]


def test_a_single_use_grant_is_consumed_once_in_total(deploy: Deploy, redis_live: RedisServer) -> None:
    with deploy(STEPUP_STEP_UP__SINGLE_USE="true", **UNBOUND) as deployment:
        browser = deployment.sign_in("alice@example.com")
        deployment.step_up(browser, start_on=deployment.a, finish_on=deployment.a)
        cookie = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}", **CSRF}
        answers = _concurrently(
            [
                ("POST", f"{url}/api/telegrams", {"json": TELEGRAM, "headers": {**cookie, "Idempotency-Key": f"k{n}"}})
                for n, url in enumerate([deployment.a, deployment.b] * 4)
            ]
        )
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses == [201] + [401] * 7, [answer.text for answer in answers]
        assert {a.json()["error"] for a in answers if a.status_code == 401} == {"insufficient_user_authentication"}
        assert deployment.telegrams() == 1


def test_a_bound_confirmation_started_on_a_and_finished_on_b_sends_one_telegram_in_total(
    deploy: Deploy, redis_live: RedisServer
) -> None:
    """send_telegram bound (the default): the transaction refused on A, confirmed across A and B, then 8 copies of
    the request sent to both at once: one 201 in total; a changed telegram is refused on either; every user's
    activity chain, appended to by both processes, is intact."""
    with deploy() as deployment:
        browser = deployment.sign_in("alice@example.com")
        refused = browser.post(f"{deployment.a}/api/telegrams", json=TELEGRAM, headers=CSRF)
        assert refused.status_code == 401, refused.text
        transaction = refused.json()["transaction"]
        assert transaction["summary"] == "singing telegram to Bob — “Happy birthday”"
        start = browser.post(
            f"{deployment.b}/api/step-up/start", json={"transaction_id": transaction["id"]}, headers=CSRF
        )
        assert start.status_code == 200 and start.json()["transaction"]["id"] == transaction["id"], start.text
        code = deployment.people.totp_code("alice@example.com")
        finish = browser.post(f"{deployment.a}/api/step-up/finish", json={"code": code}, headers=CSRF)
        assert finish.status_code == 200 and finish.json()["transaction"]["id"] == transaction["id"], finish.text

        changed = browser.post(f"{deployment.b}/api/telegrams", json={**TELEGRAM, "recipient": "Mallory"}, headers=CSRF)
        assert changed.status_code == 401 and changed.json()["transaction"]["id"] != transaction["id"]
        # The changed request used the confirmation up (a change voids it), so confirm again and race 8 copies.
        again = browser.post(
            f"{deployment.a}/api/step-up/start", json={"transaction_id": refused_id(browser, deployment)}, headers=CSRF
        )
        assert again.status_code == 200, again.text
        code = deployment.people.totp_code("alice@example.com")
        assert browser.post(f"{deployment.b}/api/step-up/finish", json={"code": code}, headers=CSRF).status_code == 200
        cookie = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}", **CSRF}
        answers = _concurrently(
            [
                ("POST", f"{url}/api/telegrams", {"json": TELEGRAM, "headers": {**cookie, "Idempotency-Key": f"k{n}"}})
                for n, url in enumerate([deployment.a, deployment.b] * 4)
            ]
        )
        assert sorted(answer.status_code for answer in answers) == [201] + [401] * 7, [a.text for a in answers]
        assert deployment.telegrams() == 1
    environment = {name: value for name, value in os.environ.items() if name != "STEPUP_CONFIG"}
    environment |= {**settings_environment(deployment.stack.settings), "STEPUP_DATABASE__URL": deployment.database_url}
    command = [sys.executable, "-m", "stepup_bff", "audit", "verify"]
    verified = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert ": intact" in verified.stdout


def refused_id(browser: httpx.Client, deployment: Deployment) -> str:
    """The transaction id of a fresh refusal of TELEGRAM (on A)."""
    refused = browser.post(f"{deployment.a}/api/telegrams", json=TELEGRAM, headers=CSRF)
    assert refused.status_code == 401, refused.text
    return str(refused.json()["transaction"]["id"])


def test_ten_wrong_codes_spread_over_a_and_b_block_the_user_on_both(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    right = deployment.people.totp_code("alice@example.com")
    wrong = "000000" if right != "000000" else "111111"
    instances = [deployment.a, deployment.b]
    remaining: list[int] = []
    wrong_codes = 0
    for challenge in range(3):
        start = browser.post(f"{instances[challenge % 2]}/api/step-up/start", json={}, headers=CSRF)
        assert start.status_code == 200, start.text
        for attempt in range(4 if challenge < 2 else 2):  # step_up.max_attempts = 4
            url = instances[attempt % 2]
            answer = browser.post(f"{url}/api/step-up/finish", json={"code": wrong}, headers=CSRF)
            wrong_codes += 1
            if wrong_codes == 10:
                # The tenth wrong code in the window, whichever instance counted the other nine.
                assert answer.status_code == 429 and answer.json()["error"] == "step_up_blocked", answer.text
            else:
                assert answer.status_code == 400, answer.text
                remaining.append(answer.json()["attempts_remaining"])
    # Per challenge, counted across both instances: 3, 2, 1, 0, then a fresh challenge.
    assert remaining == [3, 2, 1, 0, 3, 2, 1, 0, 3]
    for url in instances:
        blocked = browser.post(f"{url}/api/step-up/start", json={}, headers=CSRF)
        assert blocked.status_code == 429 and blocked.json()["error"] == "step_up_blocked"
        assert blocked.json()["retry_after"] > 0
    user_id = deployment.user_id(browser)
    # The consecutive count (NIST's lock) is one shared counter too.
    assert deployment.redis.client().get(f"stepup:consecutive-failures:{{{user_id}}}") == "10"


def test_resend_cooldown_and_max_starts_count_across_instances(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("bob@example.com")
    start = browser.post(f"{deployment.a}/api/step-up/start", json={}, headers=CSRF)
    email = next(method for method in start.json()["methods"] if method["method"] == "email")
    assert browser.post(f"{deployment.a}/api/step-up/send", json={"method_id": email["id"]}, headers=CSRF).is_success
    again = browser.post(f"{deployment.b}/api/step-up/send", json={"method_id": email["id"]}, headers=CSRF)
    assert again.status_code == 429 and again.json()["error"] == "resend_too_soon"
    for n in range(9):  # starts 2..10 of the window, alternating
        url = deployment.b if n % 2 == 0 else deployment.a
        assert browser.post(f"{url}/api/step-up/start", json={}, headers=CSRF).status_code == 200
    for url in (deployment.a, deployment.b):
        eleventh = browser.post(f"{url}/api/step-up/start", json={}, headers=CSRF)
        assert eleventh.status_code == 429 and eleventh.json()["error"] == "too_many_starts"


def test_the_finish_lock_is_shared_and_of_16_concurrent_finishes_at_most_one_succeeds(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    assert browser.post(f"{deployment.a}/api/step-up/start", json={}, headers=CSRF).status_code == 200
    code = deployment.people.totp_code("alice@example.com")
    # A finish in progress on one instance (its lock) holds off a finish on the other.
    lock = f"stepup:finish-lock:{{{deployment.user_id(browser)}}}"
    deployment.redis.client().set(lock, "1", px=30_000)
    held_off = browser.post(f"{deployment.b}/api/step-up/finish", json={"code": code}, headers=CSRF)
    assert held_off.status_code == 409 and held_off.json()["error"] == "step_up_in_progress"
    deployment.redis.client().delete(lock)

    cookie = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}", **CSRF}
    answers = _concurrently(
        [
            ("POST", f"{url}/api/step-up/finish", {"json": {"code": code}, "headers": cookie})
            for url in [deployment.a, deployment.b] * 8
        ]
    )
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(200) == 1, [answer.text for answer in answers]
    # The others: held off by the lock, the challenge already used, or the session already rotated away.
    assert set(statuses) - {200} <= {409, 401}, [answer.text for answer in answers]
    for answer in answers:
        if answer.status_code != 200:
            assert answer.json()["error"] in {"step_up_in_progress", "no_challenge", "login_required"}


# -- telegrams -----------------------------------------------------------------------------------------------------


def test_one_idempotency_key_sent_to_a_and_b_at_once_stores_one_telegram(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    deployment.step_up(browser, start_on=deployment.a, finish_on=deployment.b)
    headers = {"Cookie": f"{COOKIE}={browser.cookies[COOKIE]}", **CSRF, "Idempotency-Key": "once"}
    answers = _concurrently(
        [
            ("POST", f"{url}/api/telegrams", {"json": TELEGRAM, "headers": headers})
            for url in [deployment.a, deployment.b] * 4
        ]
    )
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert deployment.telegrams("once") == 1


# -- failing closed, recovering without a restart ------------------------------------------------------------------


def test_redis_gone_is_503_on_both_and_both_recover_when_it_returns(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    deployment.step_up(browser, start_on=deployment.a, finish_on=deployment.a)
    deployment.redis.stop()
    try:
        for url in (deployment.a, deployment.b):
            for answer in (
                _session(browser, url),
                browser.post(f"{url}/api/telegrams", json=TELEGRAM, headers=CSRF),
                browser.post(f"{url}/api/step-up/start", json={}, headers=CSRF),
            ):
                assert answer.status_code == 503 and answer.json()["error"] == "store_unavailable", answer.text
            assert browser.get(f"{url}/healthz").status_code == 200
        assert deployment.telegrams() == 0
    finally:
        deployment.redis.start()
    for url in (deployment.a, deployment.b):  # the same processes, no restart
        assert _authenticated(browser, url)
    sent = browser.post(f"{deployment.b}/api/telegrams", json=TELEGRAM, headers=CSRF)
    assert sent.status_code == 201, sent.text


def test_postgres_gone_is_503_for_the_privileged_action_and_both_recover(
    deployment: Deployment,
) -> None:
    browser = deployment.sign_in("alice@example.com")
    deployment.step_up(browser, start_on=deployment.a, finish_on=deployment.b)
    deployment.postgres.stop()
    try:
        for url in (deployment.a, deployment.b):
            sent = browser.post(f"{url}/api/telegrams", json=TELEGRAM, headers={**CSRF, "Idempotency-Key": "k"})
            assert sent.status_code == 503 and sent.json()["error"] == "database_unavailable", sent.text
            assert _authenticated(browser, url)  # sessions live in Redis
            assert browser.get(f"{url}/healthz").status_code == 200
    finally:
        deployment.postgres.start()
    assert deployment.telegrams() == 0
    for url in (deployment.a, deployment.b):
        sent = browser.post(f"{url}/api/telegrams", json=TELEGRAM, headers={**CSRF, "Idempotency-Key": "k"})
        assert sent.status_code in (200, 201), sent.text
    assert deployment.telegrams() == 1
