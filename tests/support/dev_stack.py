"""The dev FusionAuth and the BFF on free localhost ports, built exactly as `stepup-bff dev` builds them."""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyotp

from stepup_bff.app import create_app
from stepup_bff.dev import DevStack, authorize_bff_request, build_stack, default_kickstart
from support.live_server import free_port, serve

# kickstart.json reads its secrets from #{ENV.NAME}; each test run gets its own.
KICKSTART_ENV = {
    "FUSIONAUTH_ADMIN_API_KEY": "test-admin-key-" + secrets.token_hex(8),
    "FUSIONAUTH_BFF_API_KEY": "test-bff-key-" + secrets.token_hex(8),
    "FUSIONAUTH_CLIENT_SECRET": "test-client-secret-" + secrets.token_hex(8),
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

    def emailed_code(self, address: str) -> str:
        codes = [message["code"] for message in self.messages() if message["to"] == address]
        assert codes, f"no code was sent to {address}"
        return str(codes[-1])


@contextlib.contextmanager
def running_stack(tmp_path: Path, **step_up: Any) -> Iterator[RunningStack]:
    fusionauth_port, bff_port = free_port(), free_port()
    stack = build_stack(
        bff_port=bff_port,
        fusionauth_port=fusionauth_port,
        kickstart=default_kickstart(),
        storage_url=f"sqlite:///{tmp_path / 'bff.sqlite3'}",
        env=KICKSTART_ENV,
        step_up=step_up,
    )
    with serve(stack.fusionauth.app, port=fusionauth_port) as fusionauth:
        with httpx.Client(timeout=5) as http:
            http.send(authorize_bff_request(stack)).raise_for_status()
        with serve(create_app(stack.settings), port=bff_port):
            yield RunningStack(stack, stack.bff_url, f"http://localhost:{fusionauth.port}")
