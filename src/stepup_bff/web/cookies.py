"""Signed cookie values and the Set-Cookie headers a request wants sent.

Routes and dependencies queue headers with `queue_cookie(request, header)`; `PendingCookiesMiddleware` adds them
to whatever response goes out, including error responses built by the error handler, so a dependency can clear
a stale cookie even when the request then fails.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, Literal

from itsdangerous import Signer, TimestampSigner, URLSafeTimedSerializer, want_bytes
from itsdangerous.signer import HMACAlgorithm
from pydantic import SecretStr
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clock import Clock

_STATE_KEY = "pending_set_cookies"


class _HMAC(HMACAlgorithm):
    """itsdangerous' HMAC, computed by `hmac.digest` (one call into OpenSSL) instead of a pure-Python `hmac.new`
    object: the same bytes, in a fraction of the time, for the cookie of every request."""

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        return hmac.digest(key, value, self.digest_method)


class _ClockedSigner(TimestampSigner):
    """itsdangerous' timestamp signer, reading our injectable clock instead of time.time(), and deriving each
    secret's signing key once: the derivation depends on the secret and the salt alone, so the cached key is the
    one itsdangerous would compute again for every cookie, and holding it is no more than holding the secret."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._derived: dict[bytes | None, bytes] = {}

    def get_timestamp(self) -> int:
        return int(self._clock.now())

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        name = None if secret_key is None else want_bytes(secret_key)
        derived = self._derived.get(name)
        if derived is None:
            derived = self._derived[name] = super().derive_key(secret_key)
        return derived


class _Serializer(URLSafeTimedSerializer):
    """One signer per salt, made once: itsdangerous builds a new one (and derives its keys again) for every call.
    A signer holds only its configuration, so sharing it between requests shares nothing of theirs."""

    def make_signer(self, salt: str | bytes | None = None) -> Signer:
        key = self.salt if salt is None else salt
        signers: dict[str | bytes | None, Signer] = self.__dict__.setdefault("_signers", {})
        signer = signers.get(key)
        if signer is None:
            signer = signers[key] = super().make_signer(salt)
        return signer


def make_serializer(keys: Sequence[SecretStr], *, salt: str, clock: Clock) -> URLSafeTimedSerializer:
    # itsdangerous signs with the *last* key and verifies with all; our setting lists the signing key first.
    secrets = [key.get_secret_value() for key in reversed(keys)]
    return _Serializer(
        secrets,
        salt=salt,  # a distinct salt per cookie kind: a login-state cookie can never pass as a session
        signer=_ClockedSigner,
        signer_kwargs={"digest_method": hashlib.sha256, "algorithm": _HMAC(hashlib.sha256), "clock": clock},
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
        pending: list[str] = []
        state[_STATE_KEY] = pending

        async def send_with_cookies(message: Message) -> None:
            if pending and message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                headers.extend((b"set-cookie", header.encode("latin-1")) for header in pending)
                message["headers"] = headers  # the message is this response's own: no copy needed
            await send(message)

        await self.app(scope, receive, send_with_cookies)
