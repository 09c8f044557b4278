"""`stepup-bff dev`: the BFF and the embedded FusionAuth look-alike (`fusionauth_dev`) in one process.

Both are configured from the same kickstart files a real FusionAuth loads in docker-compose, with fresh random
secrets for each run. The end-to-end and browser tests build their servers with these same functions, so what
they test is what `make dev` runs. This module is imported only by the `dev` command and tests: `serve` never
loads the dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging.config
import os
import secrets
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import httpx
import uvicorn
from pydantic import SecretStr

from fusionauth_dev import Clock, DevServer, Seed, create_dev_server, fill_missing

from ..app import create_app
from ..settings import (
    DatabaseSettings,
    FusionAuthSettings,
    LoginSettings,
    SessionSettings,
    Settings,
    StepUpSettings,
    StorageSettings,
)
from .listen import PortInUse, bind_tcp
from .logs import configure_logging

REPO_ROOT = Path(__file__).resolve().parents[3]
KICKSTART_FILES = ("kickstart.json", "email-mfa.json")  # Community-safe base + the paid email-MFA overlay
WEBHOOK_KEY_ID = "stepup-bff-webhooks"  # the kid kickstart gives the webhook signing key


class DevError(Exception):
    """Something stops the dev stack from starting; the message says what to do."""


def default_kickstart() -> list[Path]:
    for base in (Path.cwd() / "kickstart", REPO_ROOT / "kickstart"):
        if (base / KICKSTART_FILES[0]).is_file():
            return [base / name for name in KICKSTART_FILES if (base / name).is_file()]
    raise DevError("kickstart/kickstart.json not found: run from a clone of stepup-bff or pass --kickstart FILE")


@dataclass(frozen=True)
class DevStack:
    fusionauth: DevServer
    seed: Seed
    settings: Settings
    fusionauth_url: str
    bff_url: str


def build_stack(
    *,
    bff_port: int,
    fusionauth_port: int,
    kickstart: Sequence[Path],
    storage_url: str,
    database_url: str | None = None,
    env: Mapping[str, str] | None = None,
    step_up: Mapping[str, Any] | None = None,
    login: Mapping[str, Any] | None = None,
    fusionauth_clock: Clock | None = None,
) -> DevStack:
    """The dev FusionAuth seeded from kickstart, and BFF settings that match it. The database defaults to the
    store's SQLite file. `fusionauth_clock` is the dev FusionAuth's own (tests move it)."""
    # Missing FUSIONAUTH_* kickstart secrets get random values: nothing fixed that someone could deploy by mistake.
    filled, _ = fill_missing(os.environ if env is None else env)
    # "localhost", not 127.0.0.1: the BFF may use plain http only there, and redirect URLs must match exactly.
    fusionauth_url = f"http://localhost:{fusionauth_port}"
    bff_url = f"http://localhost:{bff_port}"
    # The dev FusionAuth posts its signed webhooks to this BFF, wherever it listens.
    filled["BFF_WEBHOOK_URL"] = f"{bff_url}/webhooks/fusionauth"
    dev = create_dev_server(kickstart, env=filled, public_url=fusionauth_url, clock=fusionauth_clock)
    seed = dev.seed()
    settings = Settings(
        public_url=bff_url,
        fusionauth=FusionAuthSettings(
            url=f"http://127.0.0.1:{fusionauth_port}",
            public_url=fusionauth_url,
            api_key=SecretStr(seed.bff_api_key.key),
            application_id=UUID(seed.application.id),
            client_secret=SecretStr(seed.application.client_secret),
            # kickstart's dedicated webhook key (its kid), never the token-signing key.
            webhook_key_id=WEBHOOK_KEY_ID,
        ),
        # A new key each run: sessions from an earlier run (whose dev FusionAuth is gone) simply end.
        session=SessionSettings(secret_keys=[SecretStr(secrets.token_urlsafe(32))]),
        storage=StorageSettings(url=storage_url),
        database=DatabaseSettings(url=database_url or storage_url),
        step_up=StepUpSettings(**(step_up or {})),
        # The SPA's own sign-in form beside the hosted page: kickstart allows the BFF's key POST /api/login.
        login=LoginSettings(**{"native": True, **(login or {})}),
    )
    return DevStack(dev, seed, settings, fusionauth_url, bff_url)


def authorize_bff_request(stack: DevStack) -> httpx.Request:
    """The kickstart authorizes http://localhost:9000 only; on another port, tell the dev FusionAuth through its
    own API with the admin key, as an operator would tell a real one."""
    return httpx.Request(
        "PATCH",
        f"{stack.settings.fusionauth.url}/api/application/{stack.seed.application.id}",
        headers={"Authorization": stack.seed.admin_api_key.key},
        json={
            "application": {
                "oauthConfiguration": {
                    "authorizedRedirectURLs": [stack.settings.callback_url, f"{stack.bff_url}/"],
                    "logoutURL": f"{stack.bff_url}/",
                }
            }
        },
    )


def describe(stack: DevStack) -> str:
    users = []
    for user in stack.seed.users:
        if not user.password:
            continue
        methods = ", ".join(method.method for method in user.methods) or "no second factor"
        users.append(f"    {user.login_id:<22} {methods}")
    return "\n".join(
        [
            "",
            f"  stepup-bff is running at {stack.bff_url}",
            f"  Dev FusionAuth (NOT FusionAuth, development only) at {stack.fusionauth_url}",
            "",
            f"  Demo users (password: {stack.seed.users[0].password if stack.seed.users else '?'}):",
            *users,
            "",
            f"  Second-factor codes: {stack.fusionauth_url}/_dev shows each authenticator's current code and every",
            "  emailed code (they are printed below too).",
            "",
            "  Press Ctrl-C to stop.",
            "",
        ]
    )


def bind(port: int, what: str, host: str = "127.0.0.1") -> socket.socket:
    try:
        return bind_tcp(host, port)
    except PortInUse as exc:
        raise DevError(f"port {port} ({what}) is in use: stop whatever is using it, or pass another port") from exc


class _SharedSignals(uvicorn.Server):
    """A uvicorn server that leaves Ctrl-C to us: two servers in one process must stop together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_stack(stack: DevStack, fusionauth_socket: socket.socket, bff_socket: socket.socket) -> None:
    def server(app: Any, **options: Any) -> _SharedSignals:
        return _SharedSignals(uvicorn.Config(app, log_config=None, ws="none", server_header=False, **options))

    fusionauth = server(stack.fusionauth.app)
    # As `serve` runs it: the app applies X-Forwarded-* and writes its own access log (ops/request_context.py).
    bff = server(create_app(stack.settings), proxy_headers=False, access_log=False)
    servers = (fusionauth, bff)
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for each in servers:
            each.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        tasks = [asyncio.create_task(fusionauth.serve(sockets=[fusionauth_socket]))]
        while not fusionauth.started and not tasks[0].done():
            await asyncio.sleep(0.01)
        if fusionauth.started and stack.bff_url != "http://localhost:9000":
            async with httpx.AsyncClient(timeout=5) as http:
                (await http.send(authorize_bff_request(stack))).raise_for_status()
        tasks.append(asyncio.create_task(bff.serve(sockets=[bff_socket])))
        await asyncio.gather(*tasks)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run(
    *,
    bff_port: int,
    fusionauth_port: int,
    kickstart: Sequence[Path] | None,
    data_dir: Path,
    out: TextIO = sys.stdout,
) -> int:
    files = list(kickstart) if kickstart else default_kickstart()
    logging.config.dictConfig(configure_logging("info"))
    fusionauth_socket = bind(fusionauth_port, "dev FusionAuth")
    try:
        bff_socket = bind(bff_port, "stepup-bff")
    except DevError:
        fusionauth_socket.close()
        raise
    with fusionauth_socket, bff_socket:
        stack = build_stack(
            bff_port=bff_port,
            fusionauth_port=fusionauth_port,
            kickstart=files,
            storage_url=f"sqlite:///{data_dir / 'dev.sqlite3'}",
        )
        out.write(describe(stack) + "\n")
        out.flush()
        asyncio.run(serve_stack(stack, fusionauth_socket, bff_socket))
    out.write("stepup-bff dev: stopped\n")
    return 0
