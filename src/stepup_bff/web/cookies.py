"""Signed cookie values and the Set-Cookie headers a request wants sent.

Routes and dependencies queue headers with `queue_cookie(request, header)`; `PendingCookiesMiddleware` adds them
to whatever response goes out, including error responses built by the error handler, so a dependency can clear
a stale cookie even when the request then fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clock import Clock

_STATE_KEY = "pending_set_cookies"


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer, reading our injectable clock instead of time.time()."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock.now())


def make_serializer(keys: Sequence[SecretStr], *, salt: str, clock: Clock) -> URLSafeTimedSerializer:
    # itsdangerous signs with the *last* key and verifies with all; our setting lists the signing key first.
    secrets = [key.get_secret_value() for key in reversed(keys)]
    return URLSafeTimedSerializer(
        secrets,
        salt=salt,  # a distinct salt per cookie kind: a login-state cookie can never pass as a session
        signer=_ClockedSigner,
        signer_kwargs={"digest_method": hashlib.sha256, "clock": clock},
    )


def cookie_header(
    name: str,
    value: str,
    *,
    max_age: int,
    path: str = "/",
    secure: bool,
    same_site: Literal["Lax", "Strict"] = "Lax",
) -> str:
    # HttpOnly always: nothing in the page may read these. No Domain attribute: host-only cookies.
    parts = [f"{name}={value}", f"Path={path}", f"Max-Age={max_age}", "HttpOnly", f"SameSite={same_site}"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def expired_cookie_header(name: str, *, path: str = "/", secure: bool) -> str:
    return cookie_header(name, "", max_age=0, path=path, secure=secure)


def queue_cookie(request: Request, header: str) -> None:
    pending: list[str] = request.scope.setdefault("state", {}).setdefault(_STATE_KEY, [])
    pending.append(header)


class PendingCookiesMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state[_STATE_KEY] = []

        async def send_with_cookies(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend((b"set-cookie", header.encode("latin-1")) for header in state[_STATE_KEY])
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookies)
