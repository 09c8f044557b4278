"""The state of a sign-in in progress: PKCE verifier, state and nonce, bound to this browser.

Each sign-in gets its own short-lived signed cookie, named after a hash of its `state`, so two tabs signing in at
once each find their own (oauth2-proxy #817 is what a single shared cookie leads to). It expires in ten minutes;
at most MAX_PENDING live at once. On https it is a `__Host-` cookie: a sibling subdomain could otherwise plant an
attacker's pending sign-in (its cookie and state) in a victim's browser and sign the victim in to the attacker's
account (login CSRF). `__Host-` requires Path=/, so while someone signs in these few hundred bytes travel with
every request; on plain-http localhost, where no sibling exists, they stay on /auth/.

`state` is single use: the first callback records it in the store, a second one is refused even if it carries
the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadData

from ..clock import Clock
from ..errors import LoginFailed
from ..settings import Settings
from ..storage import Store
from ..web.cookies import cookie_header, expired_cookie_header, make_serializer

logger = logging.getLogger(__name__)

LOGIN_TTL = 600  # seconds a person has on FusionAuth's sign-in page
MAX_PENDING = 5  # concurrent sign-ins per browser; older ones are dropped so cookies stay small (ASVS 3.3.5)
SCOPES = "openid offline_access profile email"
MAX_RETURN_TO = 512  # characters; keeps MAX_PENDING cookies under 4 KiB together (ASVS 3.3.5)


@dataclass(frozen=True)
class PendingLogin:
    state: str
    code_verifier: str
    nonce: str
    return_to: str

    @property
    def code_challenge(self) -> str:
        digest = hashlib.sha256(self.code_verifier.encode("ascii")).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def safe_return_to(value: str | None) -> str:
    """A same-origin relative path, or "/". Anything that could leave the site is dropped (no open redirect)."""
    if not value or len(value) > MAX_RETURN_TO:
        return "/"
    # Browsers treat "\" like "/" and ignore tabs/newlines, so "/\evil.com" and "/\t/evil.com" would leave the site.
    if any(ch == "\\" or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in value):
        return "/"
    if not value.startswith("/") or value.startswith("//"):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


class LoginFlow:
    def __init__(self, settings: Settings, store: Store, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._secure = settings.cookie_secure
        self._serializer = make_serializer(settings.session.secret_keys, salt="stepup-bff/login", clock=clock)
        self._prefix = "__Host-stepup_login_" if self._secure else "stepup_login_"
        self._path = "/" if self._secure else "/auth/"

    def cookie_name(self, state: str) -> str:
        return self._prefix + hashlib.sha256(state.encode()).hexdigest()[:16]

    def begin(self, return_to: str | None, existing_cookies: Mapping[str, str]) -> tuple[PendingLogin, list[str]]:
        """A new pending sign-in and the Set-Cookie headers that store it (and drop the oldest beyond MAX_PENDING)."""
        pending = PendingLogin(
            state=secrets.token_urlsafe(32),
            code_verifier=secrets.token_urlsafe(48),  # 64 chars, within RFC 7636's 43..128
            nonce=secrets.token_urlsafe(32),
            return_to=safe_return_to(return_to),
        )
        value = self._serializer.dumps(
            {"s": pending.state, "v": pending.code_verifier, "n": pending.nonce, "r": pending.return_to}
        )
        headers = [self._expire(name) for name in self._surplus(existing_cookies)]
        headers.append(
            cookie_header(
                self.cookie_name(pending.state), value, max_age=LOGIN_TTL, path=self._path, secure=self._secure
            )
        )
        return pending, headers

    def authorize_params(
        self, pending: PendingLogin, *, prompt: str | None = None, max_age: int | None = None
    ) -> dict[str, str]:
        params = {
            "client_id": str(self._settings.fusionauth.application_id),
            "redirect_uri": self._settings.callback_url,
            "response_type": "code",
            "scope": SCOPES,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pending.code_challenge,
            "code_challenge_method": "S256",
        }
        if self._settings.fusionauth.tenant_id is not None:
            params["tenantId"] = str(self._settings.fusionauth.tenant_id)
        # OIDC Core 3.1.2.1; FusionAuth since 1.60. Only a request: the ID token's auth_time is the evidence.
        if prompt is not None:
            params["prompt"] = prompt
        if max_age is not None:
            params["max_age"] = str(max_age)
        return params

    async def complete(self, state: str, cookies: Mapping[str, str]) -> PendingLogin:
        """The pending sign-in for `state`, checked and consumed (single use)."""
        value = cookies.get(self.cookie_name(state))
        if value is None:
            # Expired, or the callback arrived in a browser that never started this sign-in.
            raise LoginFailed("login_expired", "The sign-in took too long or was started elsewhere.")
        try:
            data = self._serializer.loads(value, max_age=LOGIN_TTL)
            pending = PendingLogin(state=data["s"], code_verifier=data["v"], nonce=data["n"], return_to=data["r"])
        except (BadData, KeyError, TypeError) as exc:
            raise LoginFailed("login_expired", "The sign-in took too long or was tampered with.") from exc
        if not hmac.compare_digest(pending.state, state):
            raise LoginFailed("invalid_state", "The sign-in answer does not match this browser.")
        # Single use across every worker process: the first callback for a state wins.
        marker = "login-state-used:" + hashlib.sha256(state.encode()).hexdigest()
        if not await self._store.add(marker, "1", ttl=LOGIN_TTL):
            raise LoginFailed("login_replayed", "This sign-in answer was already used.")
        return pending

    def clear_header(self, state: str) -> str:
        return self._expire(self.cookie_name(state))

    def _expire(self, name: str) -> str:
        return expired_cookie_header(name, path=self._path, secure=self._secure)

    def _surplus(self, cookies: Mapping[str, str]) -> list[str]:
        """Names of pending-login cookies to drop so that, with the new one, at most MAX_PENDING remain."""
        aged: list[tuple[int, str]] = []
        for name, value in cookies.items():
            if not name.startswith(self._prefix):
                continue
            try:
                _, issued = self._serializer.loads(value, max_age=LOGIN_TTL, return_timestamp=True)
            except BadData:
                aged.append((0, name))  # unreadable: drop first
                continue
            aged.append((int(issued.timestamp()), name))
        aged.sort()
        excess = len(aged) - (MAX_PENDING - 1)
        return [name for _, name in aged[: max(0, excess)]]
