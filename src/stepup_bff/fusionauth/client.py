"""Every call to FusionAuth goes through here, on the one lifespan-owned httpx.AsyncClient.

httpx errors, 5xx answers and malformed JSON become `FusionAuthError` subclasses at this boundary, so routes never
see a library exception. Which calls carry the API key follows FusionAuth's documentation
(summarised in docs/fusionauth.md, §1 and §12): only those that require it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from ..clock import Clock
from ..errors import FusionAuthError, FusionAuthTimeout, FusionAuthUnavailable
from ..ops.logs import protect_http_client_logs
from ..ops.metrics import FusionAuthOperation, FusionAuthOutcome, Metrics
from ..ops.request_context import REQUEST_ID_HEADER, current_request_id
from ..settings import FusionAuthSettings

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

DISCOVERY_TTL = 3600.0  # seconds: issuer and endpoints change rarely
JWKS_TTL = 3600.0
JWKS_REFETCH_INTERVAL = 30.0  # an unknown `kid` refetches at most this often, so forged kids can't flood FusionAuth
USER_ACTION_TTL = 3600.0


class _Lenient(BaseModel):
    # FusionAuth adds fields over time; we read what we need and ignore the rest.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Discovery(_Lenient):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None = None
    userinfo_endpoint: str | None = None

    @property
    def jwks_path(self) -> str:
        # Only the path is used, joined to the back-channel URL: discovery may name a host that only browsers can
        # reach (in docker-compose, FusionAuth answers as localhost:9011).
        return _path_of(self.jwks_uri)


class TokenResponse(_Lenient):
    access_token: str
    id_token: str
    token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    expires_in: int | None = None
    refresh_token: str | None = None
    refresh_token_id: str | None = None
    scope: str | None = None
    userId: str | None = None  # FusionAuth's spelling


class RefreshedTokens(_Lenient):
    """The answer of a refresh (docs/fusionauth.md §6.2): a new access token; a new refresh token only under the
    one-time-use policy (else the one presented stays valid); an id token only when FusionAuth issues one again."""

    access_token: str
    expires_in: int | None = None
    id_token: str | None = None
    refresh_token: str | None = None
    refresh_token_id: str | None = None


class OAuthErrorBody(_Lenient):
    error: str = "unknown"
    error_reason: str | None = None
    error_description: str | None = None


class TokenExchangeRejected(Exception):
    """FusionAuth refused the authorization code (400) or our client credentials (401)."""

    def __init__(self, status_code: int, body: OAuthErrorBody) -> None:
        super().__init__(f"token endpoint answered {status_code}: {body.error} ({body.error_reason})")
        self.status_code = status_code
        self.body = body


class RefreshRejected(Exception):
    """FusionAuth refused the refresh token (400 invalid_grant): revoked, expired, or the user may no longer sign in
    (locked, deactivated, deleted). The session it belongs to is over."""


class TwoFactorMethod(_Lenient):
    id: str
    method: str
    name: str | None = None
    lastUsed: bool = False  # FusionAuth's spelling
    email: str | None = None
    mobilePhone: str | None = None


class TwoFactorStart(_Lenient):
    """The answer of /api/two-factor/start. Its `code` is deliberately not modelled: it is a live one-time code
    that completes the login on its own (docs/fusionauth.md §2), so it is dropped on parsing and never held."""

    twoFactorId: str
    methods: list[TwoFactorMethod] = []


class TwoFactorUser(_Lenient):
    id: str


class UserTwoFactor(_Lenient):
    """A User object's `twoFactor` (docs/fusionauth.md §8). Only the methods are modelled: the User API may also
    carry `recoveryCodes` and each method's `secret`, which are dropped on parsing and never held."""

    methods: list[TwoFactorMethod] = []


class UserWithFactors(_Lenient):
    id: str
    twoFactor: UserTwoFactor = UserTwoFactor()  # FusionAuth's spelling


class UserAnswer(_Lenient):
    user: UserWithFactors


class TwoFactorSecret(_Lenient):
    """A fresh authenticator secret (docs/fusionauth.md §8): base64 (what Enable takes) and base32 (what apps show).
    Secrets until the person's app holds them: no repr or log line may show them."""

    secret: SecretStr
    secretBase32Encoded: SecretStr  # FusionAuth's spelling


class TwoFactorEnabled(_Lenient):
    """What Enable Multi-Factor answers for the first method: the recovery codes, shown to the person once."""

    recoveryCodes: list[SecretStr] = []  # FusionAuth's spelling


class TwoFactorLogin(_Lenient):
    """What we keep of a successful /api/two-factor/login: who, and the state we sent. Tokens are not modelled."""

    user: TwoFactorUser
    state: dict[str, Any] | None = None


def display_name(
    *, full: str | None, first: str | None, last: str | None, username: str | None, email: str | None, fallback: str
) -> str:
    """How to greet someone, from whatever FusionAuth knows of them (the User object or the ID token's claims)."""
    joined = " ".join(part for part in (first, last) if part)
    return full or joined or username or email or fallback


class LoginUser(_Lenient):
    id: str
    email: str | None = None
    username: str | None = None
    fullName: str | None = None  # FusionAuth's spelling
    firstName: str | None = None
    lastName: str | None = None

    @property
    def display_name(self) -> str:
        return display_name(
            full=self.fullName,
            first=self.firstName,
            last=self.lastName,
            username=self.username,
            email=self.email,
            fallback=self.id,
        )


class LoginAnswer(_Lenient):
    """What we read of a Login API answer (docs/fusionauth.md §5), or of a sign-in's /api/two-factor/login (§4).

    The tokens and `twoFactorId` are SecretStr, so no repr, log line or error message can show them."""

    token: SecretStr | None = None
    refreshToken: SecretStr | None = None
    refreshTokenId: str | None = None
    user: LoginUser | None = None
    twoFactorId: SecretStr | None = None  # 242 only
    methods: list[TwoFactorMethod] = []  # 242 only; absent when the user must first set up a method


@dataclass(frozen=True)
class LoginResult:
    status: int  # FusionAuth's: 200, 202, 203, 212, 213, 242 or a refusal (404, 409, 410, 423)
    answer: LoginAnswer
    locked_until: float | None = None  # a 409's: when its login-preventing actions end (lock_ends_at)


# Beyond this an `expiry` is not a moment we can state (year 9999 and later): read as no end at all.
MAX_EPOCH_MS = 253_402_300_800_000
# An `expiry` sent as text: ASCII digits only, at most as many as MAX_EPOCH_MS has. str.isdigit() would take "²" or
# thousands of digits, on which int() raises, and a 409 would become a 500.
_EPOCH_MS_TEXT = re.compile(r"[0-9]{1,15}")

# Every answer /api/login documents for a request we make (docs/fusionauth.md §5); 401 is our key's problem, and
# anything else (400, an undocumented status) is not a verdict on the person.
LOGIN_STATUSES = frozenset({200, 202, 203, 212, 213, 242, 404, 409, 410, 423})
# /api/two-factor/login answers these with a (possibly conditional) success (docs/fusionauth.md §4).
TWO_FACTOR_SUCCESSES = frozenset({200, 202, 203, 212, 213})


class TwoFactorFailed(Exception):
    """FusionAuth refused a two-factor call; `status` is its HTTP status (404 expired, 421 bad code, ...).

    For a 409 (a login-preventing action), `locked_until` is when the lock ends, or None when it has no end."""

    def __init__(self, status: int, error_codes: list[str] | None = None, *, locked_until: float | None = None) -> None:
        super().__init__(f"FusionAuth answered {status}")
        self.status = status
        self.error_codes = error_codes or []
        self.locked_until = locked_until

    @classmethod
    def of(cls, answer: FusionAuthResponse) -> TwoFactorFailed:
        locked_until = lock_ends_at(answer.payload) if answer.status_code == 409 else None
        return cls(answer.status_code, error_codes(answer.payload), locked_until=locked_until)


@dataclass(frozen=True)
class FusionAuthResponse:
    status_code: int
    payload: Any  # parsed JSON, or None for an empty body


def _no_cookie_jar() -> CookieJar:
    # FusionAuth sets access_token/refresh_token cookies on some answers (e.g. /api/two-factor/login). A shared
    # client with a normal jar would replay one user's cookies on the next user's calls, and FusionAuth lets a
    # refresh_token cookie override the request body. A jar that accepts no domain stores nothing. (It must be
    # passed as a CookieJar: httpx copies an httpx.Cookies into a fresh jar with the default policy.)
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def build_http_client(settings: FusionAuthSettings) -> httpx.AsyncClient:
    protect_http_client_logs()
    return httpx.AsyncClient(
        base_url=settings.url,
        timeout=httpx.Timeout(settings.timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=30.0),
        cookies=_no_cookie_jar(),
        follow_redirects=False,
        headers={"Accept": "application/json"},
    )


class FusionAuthClient:
    def __init__(
        self, settings: FusionAuthSettings, http: httpx.AsyncClient, clock: Clock, metrics: Metrics | None = None
    ) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._metrics = metrics
        self._discovery: Discovery | None = None
        self._discovery_at = 0.0
        self._jwks: dict[str, dict[str, Any]] = {}
        self._jwks_at = float("-inf")
        self._lock = asyncio.Lock()
        self._user_actions: dict[str, tuple[bool, float]] = {}

    # -- transport -------------------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        operation: FusionAuthOperation,
        api_key: bool = False,
        json_body: Mapping[str, Any] | None = None,
        form: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> FusionAuthResponse:
        """One call; transport failures, 5xx and unparsable JSON become typed errors. 4xx are returned.

        `operation` names the call in the metrics: a fixed name, because the path may carry a secret."""
        sent_headers = dict(headers or {})
        if api_key:
            # FusionAuth wants the raw key, no "Bearer" (docs/fusionauth.md §1).
            sent_headers["Authorization"] = self._settings.api_key.get_secret_value()
        if self._settings.tenant_id is not None:
            sent_headers["X-FusionAuth-TenantId"] = str(self._settings.tenant_id)
        request_id = current_request_id()
        if request_id is not None:
            # FusionAuth ignores the header; a proxy or packet capture in between can tie its call to our log line.
            sent_headers[REQUEST_ID_HEADER] = request_id
        outcome: FusionAuthOutcome = "error"
        started = time.perf_counter()
        try:
            response = await self._http.request(method, path, json=json_body, data=form, headers=sent_headers)
            outcome = _outcome(response.status_code)
        except httpx.TimeoutException as exc:
            outcome = "timeout"
            raise FusionAuthTimeout() from exc
        except httpx.TransportError as exc:  # refused, reset, DNS, TLS
            outcome = "unavailable"
            raise FusionAuthUnavailable() from exc
        finally:
            if self._metrics is not None:
                self._metrics.observe_fusionauth(operation, outcome, time.perf_counter() - started)
        # Log the path template only: twoFactorId and token ids travel in paths and are secrets.
        logger.debug("fusionauth %s %s -> %d", method, _path_template(path), response.status_code)
        if response.status_code >= 500:
            raise FusionAuthError(f"The sign-in service failed (HTTP {response.status_code}). Try again in a moment.")
        if not response.content.strip():
            return FusionAuthResponse(response.status_code, None)
        try:
            payload = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FusionAuthError() from exc
        return FusionAuthResponse(response.status_code, payload)

    @staticmethod
    def parse(model: type[M], payload: Any) -> M:
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            raise FusionAuthError() from exc

    # -- OIDC metadata -------------------------------------------------------------------------------------------

    async def discovery(self) -> Discovery:
        if self._discovery is not None and self._clock.now() - self._discovery_at < DISCOVERY_TTL:
            return self._discovery
        async with self._lock:  # one fetch for a burst of concurrent first logins
            return await self._current_discovery()

    async def _current_discovery(self) -> Discovery:
        """Call with the lock held."""
        if self._discovery is None or self._clock.now() - self._discovery_at >= DISCOVERY_TTL:
            self._discovery = await self._fetch_discovery("discovery")
            self._discovery_at = self._clock.now()
        return self._discovery

    async def _fetch_discovery(self, operation: FusionAuthOperation) -> Discovery:
        answer = await self.request("GET", "/.well-known/openid-configuration", operation=operation)
        if answer.status_code != 200:
            raise FusionAuthError()
        return self.parse(Discovery, answer.payload)

    async def ping(self) -> None:
        """Readiness: FusionAuth answers discovery now (not from our cache). Raises FusionAuthError otherwise."""
        await self._fetch_discovery("readiness")

    async def signing_key(self, kid: str) -> dict[str, Any] | None:
        """The JWK for `kid`; refetches the set once per JWKS_REFETCH_INTERVAL when the kid is unknown."""
        now = self._clock.now()
        if kid in self._jwks and now - self._jwks_at < JWKS_TTL:
            return self._jwks[kid]
        async with self._lock:
            if kid not in self._jwks or now - self._jwks_at >= JWKS_TTL:
                if now - self._jwks_at >= JWKS_REFETCH_INTERVAL:
                    await self._fetch_jwks()
        return self._jwks.get(kid)

    async def _fetch_jwks(self) -> None:
        discovery = await self._current_discovery()
        answer = await self.request("GET", discovery.jwks_path, operation="jwks")
        keys = answer.payload.get("keys") if isinstance(answer.payload, dict) else None
        if answer.status_code != 200 or not isinstance(keys, list):
            raise FusionAuthError()
        self._jwks = {key["kid"]: key for key in keys if isinstance(key, dict) and isinstance(key.get("kid"), str)}
        self._jwks_at = self._clock.now()

    # -- OAuth -----------------------------------------------------------------------------------------------------

    async def authorize_url(self, params: Mapping[str, str]) -> str:
        discovery = await self.discovery()
        return f"{self._settings.browser_url}{_path_of(discovery.authorization_endpoint)}?{urlencode(params)}"

    def logout_url(self, post_logout_redirect_uri: str) -> str:
        # FusionAuth's end-session path is fixed; not depending on discovery lets sign-out work while FusionAuth is
        # down (the local session is gone either way).
        known = self._discovery.end_session_endpoint if self._discovery else None
        path = _path_of(known) if known else "/oauth2/logout"
        query = urlencode(
            {"client_id": str(self._settings.application_id), "post_logout_redirect_uri": post_logout_redirect_uri}
        )
        return f"{self._settings.browser_url}{path}?{query}"

    async def _token_endpoint(self, operation: FusionAuthOperation, grant: Mapping[str, str]) -> FusionAuthResponse:
        """POST /oauth2/token with `grant` and our client authentication (docs/fusionauth.md §6.2)."""
        discovery = await self.discovery()
        client_id = str(self._settings.application_id)
        secret = self._settings.client_secret.get_secret_value()
        # client_secret_basic (RFC 6749 2.3.1): form-encode both parts before base64, so a secret with ":" works.
        basic = base64.b64encode(f"{_form(client_id)}:{_form(secret)}".encode()).decode()
        return await self.request(
            "POST",
            _path_of(discovery.token_endpoint),
            operation=operation,
            form={**grant, "client_id": client_id},
            headers={"Authorization": f"Basic {basic}"},
        )

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenResponse:
        answer = await self._token_endpoint(
            "token",
            {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": code_verifier,
                "redirect_uri": redirect_uri,
            },
        )
        if answer.status_code in (400, 401):
            raise TokenExchangeRejected(answer.status_code, self.parse(OAuthErrorBody, answer.payload or {}))
        if answer.status_code != 200:
            raise FusionAuthError()
        return self.parse(TokenResponse, answer.payload)

    async def refresh_tokens(self, refresh_token: str) -> RefreshedTokens:
        """POST /oauth2/token, grant_type=refresh_token, with client authentication as at sign-in (docs/fusionauth.md
        §6.2). RefreshRejected for invalid_grant (the user's standing); any other refusal is ours to fix (a wrong
        client secret, the grant disabled) and is a FusionAuthError like an outage, so it cannot sign everyone out
        at once."""
        answer = await self._token_endpoint("refresh", {"grant_type": "refresh_token", "refresh_token": refresh_token})
        if answer.status_code == 200:
            return self.parse(RefreshedTokens, answer.payload)
        error = self.parse(OAuthErrorBody, answer.payload if isinstance(answer.payload, dict) else {})
        if answer.status_code == 400 and error.error == "invalid_grant":
            raise RefreshRejected(f"FusionAuth refused the refresh token: {error.error_reason or error.error}")
        logger.error(
            "FusionAuth answered a refresh with HTTP %d (%s); check the client secret and the application's grants",
            answer.status_code,
            ", ".join(error_codes(answer.payload)) or "no error code",
        )
        raise FusionAuthError()

    async def revoke_refresh_token(self, token_id: str) -> None:
        """DELETE /api/jwt/refresh/{tokenId} with the API key (docs/fusionauth.md §7). 404 = already gone."""
        answer = await self.request(
            "DELETE", f"/api/jwt/refresh/{_segment(token_id)}", operation="revoke_refresh_token", api_key=True
        )
        if answer.status_code not in (200, 404):
            raise FusionAuthError(f"Revoking the refresh token failed (HTTP {answer.status_code}).")

    async def revoke_user_refresh_tokens(self, user_id: str) -> None:
        """DELETE /api/jwt/refresh?userId=&applicationId= with the API key (docs/fusionauth.md §7): every refresh token
        of the user for this application ("sign out everywhere"). 404 (none left) counts as done."""
        query = urlencode({"userId": user_id, "applicationId": str(self._settings.application_id)})
        answer = await self.request(
            "DELETE", f"/api/jwt/refresh?{query}", operation="revoke_user_refresh_tokens", api_key=True
        )
        if answer.status_code not in (200, 404):
            raise FusionAuthError(f"Revoking the refresh tokens failed (HTTP {answer.status_code}).")

    async def prevents_login(self, action_id: str) -> bool | None:
        """Whether the user action `action_id` prevents login (GET /api/user-action/{id} with the API key, docs/
        fusionauth.md §13): a `user.action` event does not say. None when FusionAuth cannot tell us (unknown id, our
        key refused). Cached: an action's definition rarely changes, and events may come in bursts."""
        now = self._clock.now()
        cached = self._user_actions.get(action_id)
        if cached is not None and now - cached[1] < USER_ACTION_TTL:
            return cached[0]
        answer = await self.request(
            "GET", f"/api/user-action/{_segment(action_id)}", operation="user_action", api_key=True
        )
        if self._key_refused(answer, "GET /api/user-action"):
            return None
        if answer.status_code != 200 or not isinstance(answer.payload, dict):
            return None
        action = answer.payload.get("userAction")
        prevents = bool(action.get("preventLogin")) if isinstance(action, dict) else False
        self._user_actions[action_id] = (prevents, now)
        return prevents

    async def revoke_refresh_token_quietly(self, token_id: str | None) -> None:
        """Revoke, logging rather than raising: the local session is already gone, which is what protects the
        browser, so a FusionAuth outage must not fail a sign-out; the operator sees the warning."""
        if token_id is None:
            return
        try:
            await self.revoke_refresh_token(token_id)
        except FusionAuthError as exc:
            logger.warning("could not revoke refresh token at FusionAuth: %s", exc.error_code)

    # -- two-factor (step-up) ---------------------------------------------------------------------------------------

    async def start_two_factor(self, *, user_id: str, state: Mapping[str, Any]) -> TwoFactorStart:
        """POST /api/two-factor/start with the API key (docs/fusionauth.md §2). 404: the user no longer exists."""
        answer = await self.request(
            "POST",
            "/api/two-factor/start",
            operation="two_factor_start",
            api_key=True,
            json_body={"userId": user_id, "applicationId": str(self._settings.application_id), "state": state},
        )
        if answer.status_code == 200:
            return self.parse(TwoFactorStart, answer.payload)
        self._raise_if_key_refused(answer, "POST /api/two-factor/start")
        raise TwoFactorFailed.of(answer)

    async def send_two_factor_code(self, *, two_factor_id: str, method_id: str) -> None:
        """POST /api/two-factor/send/{twoFactorId}: anonymous, no API key (docs/fusionauth.md §3)."""
        answer = await self.request(
            "POST",
            f"/api/two-factor/send/{_segment(two_factor_id)}",
            operation="two_factor_send",
            json_body={"methodId": method_id},
        )
        if answer.status_code != 200:
            raise TwoFactorFailed.of(answer)

    async def complete_two_factor(self, *, two_factor_id: str, code: str, ip_address: str | None) -> TwoFactorLogin:
        """POST /api/two-factor/login for step-up: anonymous (docs/fusionauth.md §4). 421 bad code, 404 expired,
        409/410/423 the account."""
        # We only need the verdict: ask FusionAuth not to mint tokens (and cookies) that we would discard.
        answer = await self._two_factor_login(two_factor_id, code, ip_address, no_jwt=True)
        # 212/213: the factor was verified but an email/registration is unverified; irrelevant to freshness.
        if answer.status_code in (200, 212, 213):
            return self.parse(TwoFactorLogin, answer.payload)
        raise TwoFactorFailed.of(answer)

    async def complete_two_factor_sign_in(
        self, *, two_factor_id: str, code: str, ip_address: str | None
    ) -> LoginResult:
        """POST /api/two-factor/login for a sign-in's second factor (docs/fusionauth.md §4): without noJWT, so the
        answer carries the tokens. The conditional successes (202, 203, 212, 213) are returned with their status."""
        answer = await self._two_factor_login(two_factor_id, code, ip_address, no_jwt=False)
        if answer.status_code in TWO_FACTOR_SUCCESSES:
            return LoginResult(answer.status_code, self.parse(LoginAnswer, answer.payload or {}))
        raise TwoFactorFailed.of(answer)

    async def _two_factor_login(
        self, two_factor_id: str, code: str, ip_address: str | None, *, no_jwt: bool
    ) -> FusionAuthResponse:
        body: dict[str, Any] = {
            "twoFactorId": two_factor_id,
            "code": code,
            "applicationId": str(self._settings.application_id),
            "noJWT": no_jwt,
        }
        if ip_address:
            body["ipAddress"] = ip_address
        return await self.request("POST", "/api/two-factor/login", operation="two_factor_login", json_body=body)

    # -- second factors the user manages (docs/fusionauth.md §8) ---------------------------------------------------

    async def second_factors(self, *, user_id: str) -> list[TwoFactorMethod]:
        """GET /api/user/{userId} with the API key: the user's second-factor methods. 404: the user is gone."""
        answer = await self.request("GET", f"/api/user/{_segment(user_id)}", operation="retrieve_user", api_key=True)
        if answer.status_code == 200:
            found = self.parse(UserAnswer, answer.payload)
            if found.user.id != user_id:
                raise FusionAuthError("The sign-in service answered for another user.")
            return found.user.twoFactor.methods
        self._raise_if_key_refused(answer, "GET /api/user")
        raise TwoFactorFailed.of(answer)

    async def generate_two_factor_secret(self) -> TwoFactorSecret:
        """GET /api/two-factor/secret with the API key: a fresh authenticator secret; FusionAuth stores nothing."""
        answer = await self.request("GET", "/api/two-factor/secret", operation="two_factor_secret", api_key=True)
        if answer.status_code == 200:
            return self.parse(TwoFactorSecret, answer.payload)
        self._raise_if_key_refused(answer, "GET /api/two-factor/secret")
        raise FusionAuthError()

    async def enable_authenticator(self, *, user_id: str, secret: str, code: str, name: str | None) -> list[SecretStr]:
        """POST /api/user/two-factor/{userId} with the API key: add an authenticator method with `secret` (base64),
        proven by a current `code` of it. The recovery codes when it is the user's first method, else none.
        TwoFactorFailed: 421 wrong code, 404 no such user, 400 refused (a tenant without the method, a paid feature)."""
        body: dict[str, Any] = {"method": "authenticator", "secret": secret, "code": code}
        if name:
            body["name"] = name
        answer = await self.request(
            "POST",
            f"/api/user/two-factor/{_segment(user_id)}",
            operation="enable_two_factor",
            api_key=True,
            json_body=body,
        )
        if answer.status_code == 200:
            # An empty body (every method after the first) parses as no recovery codes.
            return self.parse(TwoFactorEnabled, answer.payload or {}).recoveryCodes
        self._raise_if_key_refused(answer, "POST /api/user/two-factor")
        raise TwoFactorFailed.of(answer)

    async def disable_two_factor(self, *, user_id: str, method_id: str, code: str) -> None:
        """DELETE /api/user/two-factor/{userId} with the API key: remove the method `method_id` with a current code of
        it, or every method with a recovery code. The code travels in the JSON body, never in the URL (where access
        logs would keep it). TwoFactorFailed: 421 wrong code, 404 no such user, 400 refused."""
        answer = await self.request(
            "DELETE",
            f"/api/user/two-factor/{_segment(user_id)}",
            operation="disable_two_factor",
            api_key=True,
            json_body={"methodId": method_id, "code": code},
        )
        if answer.status_code == 200:
            return
        self._raise_if_key_refused(answer, "DELETE /api/user/two-factor")
        raise TwoFactorFailed.of(answer)

    @staticmethod
    def _key_refused(answer: FusionAuthResponse, endpoint: str) -> bool:
        """Whether FusionAuth refused our API key (401) for `endpoint`, logged once for the operator: the key is
        wrong or lacks this endpoint, an operator's problem, not the user's."""
        if answer.status_code != 401:
            return False
        logger.error("FusionAuth refused the API key for %s (401); check fusionauth.api_key", endpoint)
        return True

    @classmethod
    def _raise_if_key_refused(cls, answer: FusionAuthResponse, endpoint: str) -> None:
        if cls._key_refused(answer, endpoint):
            raise FusionAuthError("The sign-in service refused our credentials.")

    # -- sign-in (native) --------------------------------------------------------------------------------------------

    async def login(self, *, login_id: str, password: str, ip_address: str | None) -> LoginResult:
        """POST /api/login with the API key (docs/fusionauth.md §5), which FusionAuth requires when `applicationId` is
        sent. Every documented answer comes back with its status for the caller to map."""
        body: dict[str, Any] = {
            "loginId": login_id,
            "password": password,
            "applicationId": str(self._settings.application_id),
        }
        if ip_address:
            body["ipAddress"] = ip_address  # FusionAuth records it in the login history and judges risk by it
        answer = await self.request("POST", "/api/login", operation="login", api_key=True, json_body=body)
        self._raise_if_key_refused(answer, "POST /api/login")
        if answer.status_code == 409:
            # The body is the list of actions, not a LoginResponse (docs/fusionauth.md §5).
            return LoginResult(409, LoginAnswer(), locked_until=lock_ends_at(answer.payload))
        if answer.status_code in LOGIN_STATUSES:
            return LoginResult(answer.status_code, self.parse(LoginAnswer, answer.payload or {}))
        logger.warning(
            "FusionAuth answered /api/login with HTTP %d: codes=%s", answer.status_code, error_codes(answer.payload)
        )
        raise FusionAuthError()


def error_codes(payload: Any) -> list[str]:
    """The codes of a FusionAuth Errors body (docs/fusionauth.md §1) or OAuth error body, for logs and diagnostics;
    FusionAuth's vocabulary, never user input or a secret."""
    if not isinstance(payload, dict):
        return []
    codes: list[Any] = []
    if isinstance(payload.get("error"), str):
        codes.append(payload["error"] + (f": {payload['error_reason']}" if payload.get("error_reason") else ""))
    codes += [error.get("code") for error in payload.get("generalErrors") or [] if isinstance(error, dict)]
    field_errors = payload.get("fieldErrors")
    if isinstance(field_errors, dict):
        for errors in field_errors.values():
            codes.extend(error.get("code") for error in errors or [] if isinstance(error, dict))
    return [str(code) for code in codes if code][:10]


def lock_ends_at(payload: Any) -> float | None:
    """When the login-preventing actions of a 409 end, in seconds since the epoch; None for a lock without an end.

    FusionAuth's 409 carries `actions` (LoginPreventedResponse), each with its `expiry` in epoch milliseconds when the
    action is temporal (docs/fusionauth.md §4; that /api/two-factor/login sends them is inferred). The lock ends when
    the last of them does, so one action without an expiry makes it a lock without an end. So does a body that
    names no action or cannot be read: "contact support" stays the answer whenever we cannot tell that waiting helps."""
    actions = payload.get("actions") if isinstance(payload, dict) else None
    if not isinstance(actions, list) or not actions:
        return None
    ends: list[float] = []
    for action in actions:
        expiry = action.get("expiry") if isinstance(action, dict) else None
        if isinstance(expiry, str) and _EPOCH_MS_TEXT.fullmatch(expiry):
            expiry = int(expiry)  # FusionAuth's OpenAPI document gives its example as a string
        if isinstance(expiry, bool) or not isinstance(expiry, int | float) or not 0 < expiry < MAX_EPOCH_MS:
            return None
        ends.append(expiry / 1000)
    return max(ends)


def _form(value: str) -> str:
    return urlencode({"": value})[1:]


def _segment(value: str) -> str:
    # Ids from FusionAuth are URL-safe already; refuse anything that could change the path.
    if not value or any(ch in value for ch in "/?#%\\") or value in (".", ".."):
        raise FusionAuthError("An identifier from the sign-in service is malformed.")
    return value


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path or "/"


def _outcome(status: int) -> FusionAuthOutcome:
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def _path_template(path: str) -> str:
    for prefix in ("/api/two-factor/send/", "/api/jwt/refresh/"):  # these ids are secrets or personal
        if path.startswith(prefix):
            return prefix + "{id}"
    return path.partition("?")[0]  # a query names a user
