"""The dev FusionAuth and the BFF on free localhost ports, built exactly as `stepup-bff dev` builds them; and BFF
*processes* (`stepup-bff serve`) configured from the same settings, for tests with several instances."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyotp
from pydantic import SecretStr

from stepup_bff.app import create_app
from stepup_bff.ops.dev import DevStack, authorize_bff_request, build_stack, default_kickstart
from stepup_bff.settings import ENV_PREFIX, Settings
from support.live_server import free_port, serve

# kickstart.json reads its secrets from #{ENV.NAME}; each test run gets its own.
KICKSTART_ENV = {
    "FUSIONAUTH_ADMIN_API_KEY": "test-admin-key-" + secrets.token_hex(8),
    "FUSIONAUTH_BFF_API_KEY": "test-bff-key-" + secrets.token_hex(8),
    "FUSIONAUTH_CLIENT_SECRET": "test-client-secret-" + secrets.token_hex(8),
    "BFF_WEBHOOK_URL": "http://localhost:9000/webhooks/fusionauth",
}


@dataclass(frozen=True)
class RunningStack:
    stack: DevStack
    bff_url: str
    fusionauth_url: str

    @property
    def password(self) -> str:
        password = self.stack.seed.user("alice@example.com").password
        assert password
        return password

    def totp_code(self, login_id: str) -> str:
        """The user's authenticator app, computed from kickstart's base64 secret as FusionAuth stores it."""
        secret = self.stack.seed.user(login_id).totp_secret
        assert secret, f"{login_id} has no authenticator"
        return pyotp.TOTP(base64.b32encode(base64.b64decode(secret)).decode()).now()

    def messages(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.fusionauth_url}/_dev/messages", timeout=5)
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()
        return messages

    def sign_in(self, login_id: str) -> httpx.Client:
        return sign_in_through_form(self.bff_url, self.fusionauth_url, login_id, self.password)

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None, **params: str) -> httpx.Response:
        """FusionAuth's admin APIs with kickstart's admin key, as an operator would change the running server."""
        headers = {"Authorization": KICKSTART_ENV["FUSIONAUTH_ADMIN_API_KEY"]}
        return httpx.request(
            method, f"{self.fusionauth_url}{path}", json=body, params=params, headers=headers, timeout=5
        )

    def login_policy(self, policy: str) -> None:
        """The tenant's MFA login policy: "Enabled" makes FusionAuth ask for the second factor at sign-in (242)."""
        body = {"tenant": {"multiFactorConfiguration": {"loginPolicy": policy}}}
        self.admin("PATCH", f"/api/tenant/{self.stack.seed.tenant_id}", body).raise_for_status()

    def emailed_code(self, address: str) -> str:
        codes = [message["code"] for message in self.messages() if message["to"] == address]
        assert codes, f"no code was sent to {address}"
        return str(codes[-1])


def sign_in_through_form(
    bff_url: str, fusionauth_url: str, login_id: str, password: str, *, callback_url: str | None = None
) -> httpx.Client:
    """A person's browser, as an httpx client: follow the redirects, fill in FusionAuth's sign-in form, come back
    signed in. `callback_url` (another instance's origin) makes the load balancer send the way back elsewhere than
    the way in. The caller closes the client."""
    browser = httpx.Client(timeout=10)
    to_fusionauth = browser.get(f"{bff_url}/auth/login", params={"return_to": "/"})
    assert to_fusionauth.status_code == 302
    form_page = browser.get(to_fusionauth.headers["location"])
    assert form_page.status_code == 200 and "<form" in form_page.text
    fields = {
        unescape(name): unescape(value)
        for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form_page.text)
    }
    submitted = browser.post(
        f"{fusionauth_url}/oauth2/authorize", data={**fields, "loginId": login_id, "password": password}
    )
    assert submitted.status_code == 302, submitted.text
    location = submitted.headers["location"]
    if callback_url is not None:
        location = urlsplit(location)._replace(netloc=urlsplit(callback_url).netloc).geturl()
    callback = browser.get(location)
    assert callback.status_code == 303 and callback.headers["location"] == "/", callback.headers
    return browser


class ShiftedClock:
    """The system clock, moved by `offset` seconds: the dev FusionAuth's, when a test needs a sign-in that happened
    minutes ago (its tokens' auth_time) while everything else runs in real time (TOTP codes, the browser)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


@contextlib.contextmanager
def running_stack(
    tmp_path: Path,
    login: dict[str, Any] | None = None,
    fusionauth_clock: ShiftedClock | None = None,
    **step_up: Any,
) -> Iterator[RunningStack]:
    fusionauth_port, bff_port = free_port(), free_port()
    stack = build_stack(
        bff_port=bff_port,
        fusionauth_port=fusionauth_port,
        kickstart=default_kickstart(),
        storage_url=f"sqlite:///{tmp_path / 'bff.sqlite3'}",
        env=KICKSTART_ENV,
        step_up=step_up,
        login=login,
        fusionauth_clock=fusionauth_clock,
    )
    with serve(stack.fusionauth.app, port=fusionauth_port) as fusionauth:
        with httpx.Client(timeout=5) as http:
            http.send(authorize_bff_request(stack)).raise_for_status()
        with serve(create_app(stack.settings), port=bff_port):
            yield RunningStack(stack, stack.bff_url, f"http://localhost:{fusionauth.port}")


# -- BFF processes ------------------------------------------------------------------------------------------------


def settings_environment(settings: Settings) -> dict[str, str]:
    """STEPUP_* variables that configure `stepup-bff serve` exactly like `settings` (secrets included)."""
    env: dict[str, str] = {}

    def encode(value: Any) -> str:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, list):
            return json.dumps([encode(item) for item in value])
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def put(name: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                put(f"{name}__{key.upper()}" if name else key.upper(), item)
        elif value is not None:
            env[ENV_PREFIX + name] = encode(value)

    put("", settings.model_dump())
    return env


@dataclass(frozen=True)
class BffProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], *, timeout: float) -> None:
    """SIGTERM to every one still running (a graceful stop: `serve` drains and closes its store), all at once, then
    each waited for; one that will not stop within `timeout` is killed."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def bff_processes(
    settings: Settings, ports: list[int], log_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[list[BffProcess]]:
    """`stepup-bff serve` once per port, all with `settings` (plus `env` on top): instances of one deployment
    behind a load balancer. Started together, waited for on /healthz, stopped with SIGTERM after."""
    environment = {**os.environ, **settings_environment(settings), **(env or {})}
    started: list[BffProcess] = []
    try:
        for port in ports:
            log = log_dir / f"bff-{port}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(  # noqa: S603 - our own command
                    [sys.executable, "-m", "stepup_bff", "serve", "--port", str(port)],
                    env=environment,
                    cwd=log_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            started.append(BffProcess(f"http://localhost:{port}", process, log))
        deadline = time.monotonic() + 60
        for bff in started:
            while True:
                try:
                    if httpx.get(f"{bff.url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert bff.process.poll() is None, f"{bff.url} exited: {bff.log.read_text(errors='replace')}"
                assert time.monotonic() < deadline, f"{bff.url} did not start: {bff.log.read_text(errors='replace')}"
                time.sleep(0.05)
        for bff in started:  # a process that lost its port to another would exit: /healthz was not its answer
            assert bff.process.poll() is None, f"{bff.url} exited: {bff.log.read_text(errors='replace')}"
        yield started
    finally:
        stop_processes([bff.process for bff in started], timeout=20)
