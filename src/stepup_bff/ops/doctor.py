"""`stepup-bff doctor`: check a configuration against a running FusionAuth, one line per check.

    ✓ what was checked and found right
    ✗ what is wrong — how to fix it
    – what could not be checked, and why (does not fail the run)

Every call goes through the BFF's own `FusionAuthClient` on the client `build_http_client` makes, so timeouts, error
mapping and headers (raw API key, X-FusionAuth-TenantId) are exactly what `serve` will see. Only endpoints the BFF's
API key is meant to have (POST /api/two-factor/start, DELETE /api/jwt/refresh, GET /api/application, GET
/api/user-action, and POST /api/login with `login.native`; GET /api/webhook, /api/key and /api/tenant to read the
webhook's setup, reported as not checked when refused) and anonymous ones are called, so a least-privilege key
passes. Secrets are never printed: not the API key, not the client secret, not the session keys, and not a URL's
user:password part.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TextIO
from urllib.parse import urlencode, urlsplit

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..auth.tokens import is_rs256_signing_key
from ..clock import SystemClock
from ..errors import FusionAuthError, FusionAuthTimeout, FusionAuthUnavailable
from ..fusionauth.client import (
    Discovery,
    FusionAuthClient,
    FusionAuthResponse,
    TokenExchangeRejected,
    build_http_client,
    error_codes,
)
from ..settings import Settings, is_loopback

OK_MARK: Literal["✓"] = "✓"
FAIL_MARK: Literal["✗"] = "✗"
SKIP_MARK: Literal["–"] = "–"
Status = Literal["✓", "✗", "–"]

# The endpoints the BFF calls with its API key (README, config.example.toml); the fixes name them.
API_KEY_ENDPOINTS = (
    "POST /api/two-factor/start, DELETE /api/jwt/refresh, GET /api/application, GET /api/user-action, GET /api/user, "
    "GET /api/two-factor/secret and POST and DELETE /api/user/two-factor"
)
# What a session-holding BFF needs to hear at once; the Community plan has them (docs/fusionauth.md §14).
WEBHOOK_EVENTS = ("jwt.refresh-token.revoke", "user.deactivate", "user.delete")
NATIVE_ENDPOINT = "POST /api/login"  # with login.native only
# Values config.example.toml ships with: a copy that was never filled in.
_PLACEHOLDER_MARKERS = ("set STEPUP_", "replace-me")
RETRY_INTERVAL = 2.0  # seconds between attempts of --wait


@dataclass(frozen=True)
class Check:
    status: Status
    message: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAIL_MARK

    def line(self) -> str:
        return f"{self.status} {self.message}" + (f" — {self.fix}" if self.fix else "")


def _display_url(url: str) -> str:
    """The URL without a user:password@ part, which would be a secret."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host  # an IPv6 address keeps its brackets
    if parts.port is not None:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _b64url_int(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")
    except ValueError:
        return None


def _rsa_public_key(pem: str) -> rsa.RSAPublicKey | None | Literal[False]:
    """The RSA key in a PEM public key or certificate; None if it is another kind of key; False if unreadable."""
    try:
        data = pem.encode()
        key = x509.load_pem_x509_certificate(data).public_key() if "CERTIFICATE" in pem else load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        return False
    return key if isinstance(key, rsa.RSAPublicKey) else None


class _Diagnosis:
    def __init__(self, settings: Settings, fusionauth: FusionAuthClient) -> None:
        self.settings = settings
        self.fa = settings.fusionauth
        self.client = fusionauth
        self.checks: list[Check] = []
        native = settings.login.native
        self.api_key_endpoints = f"{NATIVE_ENDPOINT}, {API_KEY_ENDPOINTS}" if native else API_KEY_ENDPOINTS

    # -- recording -------------------------------------------------------------------------------------------------

    def ok(self, message: str) -> None:
        self.checks.append(Check(OK_MARK, message))

    def fail(self, message: str, fix: str) -> None:
        self.checks.append(Check(FAIL_MARK, message, fix))

    def skip(self, message: str, fix: str | None = None) -> None:
        self.checks.append(Check(SKIP_MARK, message, fix))

    def transport_failure(self, what: str, exc: FusionAuthError) -> None:
        where = _display_url(self.fa.url)
        if isinstance(exc, FusionAuthTimeout):
            self.fail(
                f"{what}: FusionAuth at {where} did not answer in time "
                f"(timeout {self.fa.timeout:g} s, connect {self.fa.connect_timeout:g} s)",
                "check that FusionAuth is up and not overloaded, or raise fusionauth.timeout "
                "(STEPUP_FUSIONAUTH__TIMEOUT)",
            )
        elif isinstance(exc, FusionAuthUnavailable):
            self.fail(
                f"{what}: cannot connect to FusionAuth at {where} (refused, unknown host or TLS failure)",
                "start FusionAuth, or set fusionauth.url (STEPUP_FUSIONAUTH__URL) to the address this machine "
                "reaches it at (in docker-compose: http://fusionauth:9011)",
            )
        else:
            self.fail(
                f"{what}: FusionAuth at {where} answered with a server error or a body that is not JSON ({exc})",
                "look at FusionAuth's log; check that fusionauth.url points at FusionAuth and not at another server",
            )

    async def call(
        self, what: str, method: str, path: str, *, api_key: bool = False, json_body: dict[str, Any] | None = None
    ) -> FusionAuthResponse | None:
        try:
            return await self.client.request(method, path, operation="doctor", api_key=api_key, json_body=json_body)
        except FusionAuthError as exc:
            self.transport_failure(what, exc)
            return None

    # -- the checks ------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        self.secrets_filled_in()
        if not await self.reachable():
            self.skip("the other FusionAuth checks did not run: FusionAuth must answer first")
            self.browser_settings()
            return
        discovery = await self.discovery()
        jwks = await self.jwks(discovery) if discovery is not None else None
        await self.api_key_may_start_two_factor()
        await self.api_key_may_revoke_refresh_tokens()
        await self.api_key_may_read_user_actions()
        await self.api_key_may_manage_factors()
        if self.settings.login.native:
            await self.api_key_may_sign_in()
        application = await self.application()
        if application is not None:
            self.application_urls(application)
            self.application_oauth_policies(application)
            await self.tenant_issuer(application, discovery)
            await self.signing_keys(application, jwks)
            await self.webhook(application, jwks)
        else:
            self.skip("the application's settings were not checked: the application could not be read")
        await self.client_secret(discovery)
        self.browser_settings()

    def secrets_filled_in(self) -> None:
        placeholders = [
            name
            for name, value in (
                ("fusionauth.api_key (STEPUP_FUSIONAUTH__API_KEY)", self.fa.api_key.get_secret_value()),
                (
                    "fusionauth.client_secret (STEPUP_FUSIONAUTH__CLIENT_SECRET)",
                    self.fa.client_secret.get_secret_value(),
                ),
                *(
                    (f"session.secret_keys[{index}] (STEPUP_SESSION__SECRET_KEYS)", key.get_secret_value())
                    for index, key in enumerate(self.settings.session.secret_keys)
                ),
            )
            if any(marker in value for marker in _PLACEHOLDER_MARKERS)
        ]
        if placeholders:
            self.fail(
                f"still the placeholder from config.example.toml: {', '.join(placeholders)}",
                "set the real values, preferably in the environment; a session key can be made with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'",
            )
        else:
            self.ok("secrets are set: API key, client secret, session keys (values not shown)")

    async def reachable(self) -> bool:
        answer = await self.call("FusionAuth reachable", "GET", "/api/status")
        if answer is None:
            return False
        where = _display_url(self.fa.url)
        if answer.status_code != 200:
            self.fail(
                f"FusionAuth at {where} answered GET /api/status with HTTP {answer.status_code}",
                "check that fusionauth.url (STEPUP_FUSIONAUTH__URL) is FusionAuth's base URL, without a path",
            )
            return False
        self.ok(f"FusionAuth answers at {where} (GET /api/status: 200)")
        return True

    async def discovery(self) -> Discovery | None:
        try:
            discovery = await self.client.discovery()
        except FusionAuthError as exc:
            if isinstance(exc, FusionAuthTimeout | FusionAuthUnavailable):
                self.transport_failure("OpenID discovery", exc)
            else:
                self.fail(
                    "OpenID discovery: GET /.well-known/openid-configuration did not return a usable document "
                    "(issuer, authorization_endpoint, token_endpoint and jwks_uri are needed)",
                    "check that fusionauth.url is FusionAuth's base URL; in a multi-tenant FusionAuth set "
                    "fusionauth.tenant_id (STEPUP_FUSIONAUTH__TENANT_ID)",
                )
            return None
        if not discovery.issuer.strip():
            self.fail(
                "OpenID discovery: the issuer is empty, so no token could be verified",
                "set the tenant's issuer (Tenants → General → Issuer), e.g. to FusionAuth's public URL",
            )
            return None
        self.ok(f'OpenID discovery: issuer "{discovery.issuer}"')
        return discovery

    async def jwks(self, discovery: Discovery) -> list[dict[str, Any]] | None:
        path = discovery.jwks_path  # joined to the back channel, exactly as FusionAuthClient fetches it
        answer = await self.call("JWKS", "GET", path)
        if answer is None:
            return None
        keys = answer.payload.get("keys") if isinstance(answer.payload, dict) else None
        if answer.status_code != 200 or not isinstance(keys, list):
            self.fail(
                f"JWKS: GET {path} answered HTTP {answer.status_code} without a key set",
                "check that discovery's jwks_uri points at FusionAuth's /.well-known/jwks.json",
            )
            return None
        usable = [key for key in keys if is_rs256_signing_key(key) and isinstance(key.get("kid"), str)]
        if not usable:
            found = ", ".join(
                f'{key.get("alg") or key.get("kty") or "?"} "{key.get("kid", "?")}"'
                for key in keys
                if isinstance(key, dict)
            )
            self.fail(
                f"JWKS has no RS256 signing key (found: {found or 'no keys at all'}); the BFF verifies RS256 only",
                "in Key Master generate an RS256 key and choose it for the application's access and id tokens "
                "(Applications → JWT); FusionAuth never publishes HMAC (HS256) keys",
            )
            return [key for key in keys if isinstance(key, dict)]
        self.ok(f"JWKS: RS256 signing key(s) {', '.join(str(key['kid']) for key in usable)}")
        return [key for key in keys if isinstance(key, dict)]

    async def api_key_may_start_two_factor(self) -> None:
        # The probe must prove the key may POST /api/two-factor/start without starting anything. A random UUID names
        # no user (122 random bits), so FusionAuth answers 404 once it has accepted the key and its permission, or 401
        # before looking at the body. No twoFactorId or code is created, nothing is sent, and no user's failed-attempt
        # or lockout counter moves (those count per user). A loginId (an email) could match a real person: never that.
        answer = await self.call(
            "API key for POST /api/two-factor/start",
            "POST",
            "/api/two-factor/start",
            api_key=True,
            json_body={"userId": str(uuid.uuid4()), "applicationId": str(self.fa.application_id)},
        )
        self._api_key_verdict("POST /api/two-factor/start", "a made-up user", answer)

    async def api_key_may_revoke_refresh_tokens(self) -> None:
        # Same idea for sign-out's revocation: DELETE one refresh token by a random id that names no token, so nothing
        # is revoked and the answer is 404 (key accepted) or 401 (refused). Never the query forms (?userId=,
        # ?applicationId=): those revoke every token of a user or of the whole application.
        token_id = str(uuid.uuid4())
        answer = await self.call(
            "API key for DELETE /api/jwt/refresh", "DELETE", f"/api/jwt/refresh/{token_id}", api_key=True
        )
        self._api_key_verdict("DELETE /api/jwt/refresh", "a made-up refresh token id", answer)

    async def api_key_may_read_user_actions(self) -> None:
        # A `user.action` webhook does not say whether the action prevents login; the BFF reads the action. A random
        # id names none: 404 (key accepted) or 401.
        answer = await self.call(
            "API key for GET /api/user-action", "GET", f"/api/user-action/{uuid.uuid4()}", api_key=True
        )
        self._api_key_verdict("GET /api/user-action", "a made-up user action id", answer)

    async def api_key_may_sign_in(self) -> None:
        # Native sign-in calls the Login API with the key. The probe signs nobody in: a made-up login id in the
        # reserved .invalid domain (RFC 2606) names no one, so FusionAuth answers 404 once it has accepted the key and
        # its permission, or 401 before. FusionAuth counts failed sign-ins per user, so no one's lockout counter moves.
        answer = await self.call(
            "API key for POST /api/login",
            "POST",
            "/api/login",
            api_key=True,
            json_body={
                "loginId": f"stepup-bff-doctor-{uuid.uuid4()}@doctor.invalid",
                "password": secrets.token_urlsafe(24),
                "applicationId": str(self.fa.application_id),
            },
        )
        self._api_key_verdict(f"{NATIVE_ENDPOINT} (login.native)", "a made-up login id", answer)

    async def api_key_may_manage_factors(self) -> None:
        # The second factors people list, add and remove (stepup/factors.py), each probed for a random user id that
        # names nobody: FusionAuth answers once it has accepted the key (401 before) and no user is read or changed.
        # The secret the Generate a Secret API hands out is thrown away; FusionAuth stores nothing for it.
        nobody = str(uuid.uuid4())
        answer = await self.call("API key for GET /api/user", "GET", f"/api/user/{nobody}", api_key=True)
        self._api_key_verdict("GET /api/user", "a made-up user", answer)
        answer = await self.call(
            "API key for GET /api/two-factor/secret", "GET", "/api/two-factor/secret", api_key=True
        )
        self._api_key_verdict("GET /api/two-factor/secret", "a new secret, thrown away", answer)
        # [inferred] Whether FusionAuth checks the user or the body first is not documented: any answer but 401 (an
        # unknown user, a code that is not right, a refused body) says that the key was accepted.
        answers_without_the_key = (400, 404, 421)
        secret = base64.b64encode(secrets.token_bytes(20)).decode()
        answer = await self.call(
            "API key for POST /api/user/two-factor",
            "POST",
            f"/api/user/two-factor/{nobody}",
            api_key=True,
            json_body={"method": "authenticator", "secret": secret, "code": "000000"},
        )
        self._api_key_verdict("POST /api/user/two-factor", "a made-up user", answer, answers_without_the_key)
        answer = await self.call(
            "API key for DELETE /api/user/two-factor",
            "DELETE",
            f"/api/user/two-factor/{nobody}",
            api_key=True,
            json_body={"methodId": "NONE", "code": "000000"},
        )
        self._api_key_verdict("DELETE /api/user/two-factor", "a made-up user", answer, answers_without_the_key)

    def _api_key_verdict(
        self,
        endpoint: str,
        probe: str,
        answer: FusionAuthResponse | None,
        accepted: tuple[int, ...] = (200, 404),
    ) -> None:
        if answer is None:
            return
        if answer.status_code in accepted:
            self.ok(f"API key may call {endpoint} (probed with {probe}: {answer.status_code})")
        elif answer.status_code == 401:
            self.fail(
                f"FusionAuth refused the API key for {endpoint} (401): the key is wrong or lacks this endpoint",
                f"set fusionauth.api_key (STEPUP_FUSIONAUTH__API_KEY) to a key allowed {self.api_key_endpoints} "
                "(Settings → API Keys); a tenant-scoped key must belong to the application's tenant",
            )
        else:
            details = ", ".join(error_codes(answer.payload)[:5])
            self.fail(
                f"FusionAuth rejected the probe of {endpoint} with HTTP {answer.status_code}"
                + (f" ({details})" if details else ""),
                "check fusionauth.application_id (STEPUP_FUSIONAUTH__APPLICATION_ID) and, with several tenants, "
                "fusionauth.tenant_id (STEPUP_FUSIONAUTH__TENANT_ID)",
            )

    async def application(self) -> dict[str, Any] | None:
        application_id = str(self.fa.application_id)
        answer = await self.call("application", "GET", f"/api/application/{application_id}", api_key=True)
        if answer is None:
            return None
        if answer.status_code == 401:
            self.fail(
                f"FusionAuth refused the API key for GET /api/application/{application_id} (401): the key is wrong "
                "or lacks this endpoint",
                f"set fusionauth.api_key (STEPUP_FUSIONAUTH__API_KEY) to a key allowed {self.api_key_endpoints} "
                "(Settings → API Keys); a tenant-scoped key must belong to the application's tenant",
            )
            return None
        if answer.status_code == 404:
            self.fail(
                f"there is no application {application_id} in FusionAuth",
                "set fusionauth.application_id (STEPUP_FUSIONAUTH__APPLICATION_ID) to the application's id "
                "(Applications → View; it is also the OAuth client id)",
            )
            return None
        application = answer.payload.get("application") if isinstance(answer.payload, dict) else None
        if answer.status_code != 200 or not isinstance(application, dict):
            self.fail(
                f"GET /api/application/{application_id} answered HTTP {answer.status_code} without an application",
                "check fusionauth.url and fusionauth.application_id",
            )
            return None
        if application.get("active") is False:
            self.fail(
                f'application "{application.get("name", application_id)}" ({application_id}) is inactive',
                "reactivate it (Applications → Reactivate); nobody can sign in to an inactive application",
            )
        else:
            self.ok(f'application "{application.get("name", "?")}" ({application_id}) exists')
        return application

    def application_urls(self, application: dict[str, Any]) -> None:
        oauth = application.get("oauthConfiguration") or {}
        authorized = [str(url) for url in oauth.get("authorizedRedirectURLs") or []]
        wildcards = oauth.get("authorizedURLValidationPolicy") == "AllowWildcards"

        def authorizes(url: str) -> str | None:
            if url in authorized:
                return url
            # With the AllowWildcards policy an entry may contain "*"; FusionAuth's own matching is stricter than
            # fnmatch, so a wildcard match is reported as such.
            if wildcards:
                return next((entry for entry in authorized if "*" in entry and fnmatch.fnmatchcase(url, entry)), None)
            return None

        callback = self.settings.callback_url
        match = authorizes(callback)
        if match is None:
            self.fail(
                f"redirect URL {callback} is not among the application's authorized redirect URLs "
                f"({', '.join(authorized) or 'none'}); FusionAuth will refuse every sign-in",
                "add it under Applications → OAuth → Authorized redirect URLs, or fix public_url (STEPUP_PUBLIC_URL)",
            )
        else:
            self.ok(f"redirect URL {callback} is authorized" + ("" if match == callback else f" (by {match})"))
        # Sign-out sends this as post_logout_redirect_uri, which FusionAuth honours only for an authorized redirect URL.
        after_logout = f"{self.settings.public_url}/"
        if authorizes(after_logout) is None:
            logout_url = oauth.get("logoutURL")
            self.fail(
                f"post-logout redirect {after_logout} is not an authorized redirect URL"
                + (f" (FusionAuth would fall back to the logout URL {logout_url})" if logout_url else ""),
                "add it under Applications → OAuth → Authorized redirect URLs (and set it as the Logout URL)",
            )
        else:
            self.ok(f"post-logout redirect {after_logout} is authorized")

    def application_oauth_policies(self, application: dict[str, Any]) -> None:
        oauth = application.get("oauthConfiguration") or {}
        pkce = oauth.get("proofKeyForCodeExchangePolicy", "NotRequired")
        if pkce == "Required":
            self.ok("PKCE policy: Required")
        else:
            # The BFF always sends PKCE, so sign-in works either way; but only Required makes FusionAuth refuse a
            # stolen or injected code redeemed without its verifier (RFC 9700 2.1.1).
            self.fail(
                f"PKCE policy is {pkce}: FusionAuth would redeem an authorization code without its verifier",
                "set Applications → OAuth → PKCE to Required",
            )
        client_auth = oauth.get("clientAuthenticationPolicy", "Required")
        if client_auth == "Required":
            self.ok("client authentication policy: Required")
        else:
            self.fail(
                f"client authentication policy is {client_auth}: codes and refresh tokens could be redeemed without "
                "the client secret",
                "set Applications → OAuth → Client authentication to Required (the BFF always sends the secret)",
            )
        grants = [str(grant) for grant in oauth.get("enabledGrants") or []]
        missing = [grant for grant in ("authorization_code", "refresh_token") if grant not in grants]
        if missing:
            self.fail(
                f"grants {' and '.join(missing)} not enabled (enabled: {', '.join(grants) or 'none'})",
                "enable Authorization Code and Refresh Token under Applications → OAuth → Enabled grants",
            )
        elif not oauth.get("generateRefreshTokens", False):
            self.fail(
                "the application does not generate refresh tokens, so sign-out has nothing to revoke",
                "turn on Applications → OAuth → Generate refresh tokens",
            )
        else:
            self.ok("grants authorization_code and refresh_token enabled; refresh tokens are generated")

    async def tenant_issuer(self, application: dict[str, Any], discovery: Discovery | None) -> None:
        tenant_id = application.get("tenantId")
        if discovery is None or not isinstance(tenant_id, str):
            self.skip("token issuer not compared: discovery or the application's tenant is unknown")
            return
        # The BFF expects the issuer its own discovery call reports; the tokens carry the issuer of the application's
        # tenant. They differ when the application lives in a tenant other than the one discovery describes.
        answer = await self.call(
            "issuer of the application's tenant", "GET", f"/{tenant_id}/.well-known/openid-configuration"
        )
        if answer is None:
            return
        issuer = answer.payload.get("issuer") if isinstance(answer.payload, dict) else None
        if answer.status_code != 200 or not isinstance(issuer, str):
            # Tenant-scoped discovery exists since FusionAuth 1.46.
            self.skip(f"token issuer of tenant {tenant_id} not compared: this FusionAuth has no tenant discovery")
        elif issuer != discovery.issuer:
            self.fail(
                f'tokens for this application will carry iss "{issuer}" (tenant {tenant_id}) but the BFF expects '
                f'"{discovery.issuer}": every sign-in would be rejected',
                f"set fusionauth.tenant_id (STEPUP_FUSIONAUTH__TENANT_ID) to {tenant_id} and run doctor again, or "
                "move the application to the default tenant",
            )
        else:
            self.ok(f'tokens for this application carry iss "{issuer}", the issuer the BFF expects')

    async def signing_keys(self, application: dict[str, Any], jwks: list[dict[str, Any]] | None) -> None:
        jwt = application.get("jwtConfiguration") or {}
        access_key_id, id_key_id = jwt.get("accessTokenKeyId"), jwt.get("idTokenKeyId")
        if not jwt.get("enabled") or not access_key_id:
            self.skip(
                "token signing keys: the application uses its tenant's keys, which this API key may not read",
                "make sure the tenant's access and id token keys are RS256 (Tenants → JWT), or choose RS256 keys "
                "on the application (Applications → JWT)",
            )
            return
        # The Key API would need another permission on the key; the anonymous public-key API is enough: it returns the
        # public half of the application's access-token key, and nothing at all for an HMAC key.
        query = urlencode({"applicationId": str(self.fa.application_id)})
        answer = await self.call("token signing key", "GET", f"/api/jwt/public-key?{query}")
        if answer is None:
            return
        pem = answer.payload.get("publicKey") if isinstance(answer.payload, dict) else None
        hmac_fix = (
            "in Key Master generate an RS256 key and choose it for access and id tokens (Applications → JWT); "
            "the BFF verifies RS256 only and FusionAuth never publishes HMAC keys"
        )
        if answer.status_code == 404:
            # FusionAuth has offered this API since 1.8, and without parameters it lists every public key. If that form
            # is missing too, this server has no such API (or no asymmetric key at all, which the JWKS line reports):
            # say so rather than call the key HMAC.
            listing = await self.call("token signing key", "GET", "/api/jwt/public-key")
            if listing is None:
                return
            if listing.status_code == 404:
                self.skip(
                    "token signing key not checked: this server does not answer GET /api/jwt/public-key",
                    "make sure the application's access and id token keys are RS256 (Applications → JWT)",
                )
                return
            self.fail(
                f"FusionAuth has no public key for the application's access-token key {access_key_id}: it is an HMAC "
                "(HS…) key",
                hmac_fix,
            )
            return
        if answer.status_code != 200 or not isinstance(pem, str):
            self.fail(
                f"GET /api/jwt/public-key?{query} answered HTTP {answer.status_code} without a public key",
                "check that fusionauth.url points at FusionAuth",
            )
            return
        key = _rsa_public_key(pem)
        if key is False:
            self.fail("the application's public key could not be read", "look at the key in Key Master")
            return
        if key is None:
            self.fail(f"the application's access-token key {access_key_id} is not an RSA key", hmac_fix)
            return
        numbers = key.public_numbers()
        published = next(
            (
                entry
                for entry in jwks or []
                if _b64url_int(entry.get("n")) == numbers.n and _b64url_int(entry.get("e")) == numbers.e
            ),
            None,
        )
        if published is None:
            self.fail(
                f"the application's access-token key {access_key_id} is not in the JWKS, so its tokens cannot be "
                "verified",
                "check that discovery and fusionauth.url lead to the same FusionAuth",
            )
        elif not is_rs256_signing_key(published):
            self.fail(
                f"the application's access-token key is published as {published.get('alg')}, not RS256",
                hmac_fix,
            )
        else:
            self.ok(f'access-token signing key: RS256, published in the JWKS as "{published.get("kid")}"')
        if id_key_id and id_key_id != access_key_id:
            self.skip(
                f"the id-token key {id_key_id} is not the access-token key; FusionAuth shows its algorithm only "
                "through the Key API, which this API key may not call",
                "make sure it is an RS256 key too (Settings → Key Master)",
            )

    # -- the webhook ---------------------------------------------------------------------------------------------------

    def _read(
        self, answer: FusionAuthResponse | None, path: str, wrapper: str
    ) -> dict[str, Any] | list[Any] | None | Literal[False]:
        """`wrapper` of the answer to GET `path` with the API key; False when the key may not read it (401), None on
        failure."""
        if answer is None:
            return None
        if answer.status_code == 401:
            return False
        found = answer.payload.get(wrapper) if isinstance(answer.payload, dict) else None
        if answer.status_code != 200 or not isinstance(found, dict | list):
            self.fail(f"GET {path} answered HTTP {answer.status_code}", "check fusionauth.url")
            return None
        return found

    async def webhook(self, application: dict[str, Any], jwks: list[dict[str, Any]] | None) -> None:
        kid = self.fa.webhook_key_id
        url = self.settings.webhook_url
        if kid is None:
            self.skip(
                "webhooks are off (fusionauth.webhook_key_id unset): sessions follow FusionAuth through token refresh "
                "only, within the access token's lifetime",
                "give FusionAuth a webhook signed with a key of its own and set fusionauth.webhook_key_id to its kid "
                "(kickstart/kickstart.json is a working example)",
            )
            return
        tenant_id = str(application.get("tenantId") or self.fa.tenant_id or "")
        answer = await self.call("webhook", "GET", "/api/webhook", api_key=True)
        hooks = self._read(answer, "/api/webhook", "webhooks")
        if hooks is False:
            self.skip(
                "the webhook was not checked: the API key may not read GET /api/webhook",
                f"allow it GET /api/webhook, or check by hand that a webhook posts to {url}, signed with the key "
                f'"{kid}", for {", ".join(WEBHOOK_EVENTS)}',
            )
        elif isinstance(hooks, list):
            await self._webhook_setup(application, [h for h in hooks if isinstance(h, dict)], url, tenant_id, jwks)
        if tenant_id:
            await self._tenant_events(tenant_id)

    async def _webhook_setup(
        self,
        application: dict[str, Any],
        hooks: list[dict[str, Any]],
        url: str,
        tenant_id: str,
        jwks: list[dict[str, Any]] | None,
    ) -> None:
        kid = self.fa.webhook_key_id
        hook = next((h for h in hooks if h.get("url") == url), None)
        if hook is None:
            others = ", ".join(str(h.get("url")) for h in hooks) or "none"
            self.fail(
                f"no webhook posts to {url} (webhooks: {others})",
                "create one (Settings → Webhooks) for that URL, or set fusionauth.webhook_url "
                "(STEPUP_FUSIONAUTH__WEBHOOK_URL) to where FusionAuth reaches this BFF",
            )
            return
        self.ok(f"a webhook posts to {url}")
        enabled = hook.get("eventsEnabled") or {}
        missing = [event for event in WEBHOOK_EVENTS if not enabled.get(event)]
        if missing:
            self.fail(f"the webhook does not send {', '.join(missing)}", "enable them on the webhook (Events tab)")
        if not (hook.get("global") or tenant_id in (hook.get("tenantIds") or [])):
            self.fail(
                f"the webhook is not used for tenant {tenant_id}",
                "make it global, or add the tenant to it (Webhooks → Tenants)",
            )
        signature = hook.get("signatureConfiguration") or {}
        key_id = signature.get("signingKeyId")
        if not signature.get("enabled") or not key_id:
            self.fail(
                "the webhook is not signed: the BFF refuses every unsigned webhook",
                f'turn on its signature with the Key Master key whose kid is "{kid}"',
            )
            return
        jwt = application.get("jwtConfiguration") or {}
        if key_id in (jwt.get("accessTokenKeyId"), jwt.get("idTokenKeyId")):
            self.fail(
                "the webhook is signed with the key that signs tokens: the BFF refuses it",
                "generate a key for webhooks alone in Key Master and sign the webhook with it",
            )
            return
        answer = await self.call("webhook signing key", "GET", f"/api/key/{key_id}", api_key=True)
        key = self._read(answer, f"/api/key/{key_id}", "key")
        if key is False:
            self.skip(
                f"the webhook's signing key {key_id} was not compared with fusionauth.webhook_key_id: the API key may "
                "not read GET /api/key (FusionAuth allows only keys for all tenants there)",
                f'check in Key Master that its kid is "{kid}"',
            )
        elif isinstance(key, dict):
            algorithm = str(key.get("algorithm") or "")
            expected = "HS256" if self.fa.webhook_secret is not None else "RS256"
            if key.get("kid") != kid:
                self.fail(
                    f'the webhook is signed with the key whose kid is "{key.get("kid")}", not "{kid}"',
                    f"set fusionauth.webhook_key_id (STEPUP_FUSIONAUTH__WEBHOOK_KEY_ID) to {key.get('kid')}",
                )
            elif algorithm != expected:
                self.fail(
                    f"the webhook key is {algorithm or 'of an unknown algorithm'}, the BFF verifies {expected}",
                    "an RS256 key, or an HS256 key with its secret in fusionauth.webhook_secret",
                )
            else:
                self.ok(f'the webhook is signed with its own {algorithm} key "{kid}"')
        if self.fa.webhook_secret is None and jwks is not None:
            if not any(entry.get("kid") == kid and is_rs256_signing_key(entry) for entry in jwks):
                self.fail(
                    f'the JWKS has no RS256 key "{kid}", so no webhook will verify', "check the key in Key Master"
                )

    async def _tenant_events(self, tenant_id: str) -> None:
        answer = await self.call("tenant events", "GET", f"/api/tenant/{tenant_id}", api_key=True)
        tenant = self._read(answer, f"/api/tenant/{tenant_id}", "tenant")
        if tenant is False:
            self.skip(
                "the tenant's events were not checked: the API key may not read GET /api/tenant",
                f"check Tenants → Webhooks: {', '.join(WEBHOOK_EVENTS)} enabled, transaction setting None",
            )
            return
        if not isinstance(tenant, dict):
            return
        events = (tenant.get("eventConfiguration") or {}).get("events") or {}
        off = [event for event in WEBHOOK_EVENTS if not (events.get(event) or {}).get("enabled")]
        blocking = [
            event
            for event in WEBHOOK_EVENTS
            if (events.get(event) or {}).get("enabled")
            and (events.get(event) or {}).get("transactionType", "None") != "None"
        ]
        if off:
            self.fail(f"the tenant does not enable {', '.join(off)}", "enable them under Tenants → Webhooks")
        elif blocking:
            self.fail(
                f"{', '.join(blocking)} are transactional: FusionAuth's operation would fail while this BFF is down",
                "set their transaction setting to None (Tenants → Webhooks); token refresh covers a missed webhook",
            )
        else:
            self.ok(f"the tenant enables {', '.join(WEBHOOK_EVENTS)} without waiting for the BFF")

    async def client_secret(self, discovery: Discovery | None) -> None:
        if discovery is None:
            self.skip("client secret not checked: discovery failed, so the token endpoint is unknown")
            return
        # FusionAuth never returns a client secret, so the only check is to present it. The BFF's own code exchange
        # runs with a made-up code: FusionAuth authenticates the client first (401 invalid_client for a wrong
        # secret), then looks for the code, which cannot exist (256 random bits), so no token is ever issued.
        try:
            await self.client.exchange_code(
                code=secrets.token_urlsafe(32),
                code_verifier=secrets.token_urlsafe(48),
                redirect_uri=self.settings.callback_url,
            )
        except TokenExchangeRejected as exc:
            body = exc.body
            if exc.status_code == 401 or body.error == "invalid_client":
                self.fail(
                    f"FusionAuth refused the client credentials ({exc.status_code} {body.error}"
                    + (f": {body.error_reason}" if body.error_reason else "")
                    + ")",
                    "set fusionauth.client_secret (STEPUP_FUSIONAUTH__CLIENT_SECRET) to the application's client "
                    "secret (Applications → OAuth → Client secret) and check fusionauth.application_id",
                )
            elif body.error == "invalid_grant":
                self.ok("client secret: FusionAuth accepted the client and refused only the made-up code")
            else:
                self.skip(
                    f"client secret not confirmed: the token endpoint answered {exc.status_code} {body.error}"
                    + (f": {body.error_reason}" if body.error_reason else "")
                )
        except FusionAuthError as exc:
            self.transport_failure("client secret", exc)
        else:  # pragma: no cover - a made-up code cannot be redeemed
            self.ok("client secret: accepted")

    def browser_settings(self) -> None:
        public = urlsplit(self.settings.public_url)
        if self.settings.cookie_secure:
            self.ok(f"public_url {self.settings.public_url}: https, cookies are Secure and the session cookie __Host-")
        else:
            # Settings refuse plain http anywhere but localhost, so this is a development setup.
            self.ok(f"public_url {self.settings.public_url}: plain http on localhost only, so cookies are not Secure")
        browser = urlsplit(self.fa.browser_url)
        shown = _display_url(self.fa.browser_url)
        if browser.scheme == "https":
            self.ok(f"FusionAuth's browser URL {shown} uses https")
        elif not is_loopback(browser.hostname):
            self.fail(
                f"FusionAuth's browser URL {shown} is plain http on a network host: passwords would cross the network "
                "unencrypted",
                "serve FusionAuth over https and set fusionauth.public_url (STEPUP_FUSIONAUTH__PUBLIC_URL)",
            )
        elif public.scheme == "https":
            self.fail(
                f"FusionAuth's browser URL {shown} is localhost while the BFF is served at {self.settings.public_url}: "
                "other people's browsers cannot reach it",
                "set fusionauth.public_url (STEPUP_FUSIONAUTH__PUBLIC_URL) to FusionAuth's public https URL",
            )
        else:
            self.ok(f"FusionAuth's browser URL {shown}: plain http on localhost (development)")


async def diagnose(settings: Settings) -> list[Check]:
    """Run every check once against the FusionAuth `settings` name; never raises for FusionAuth's answers."""
    async with build_http_client(settings.fusionauth) as http:
        diagnosis = _Diagnosis(settings, FusionAuthClient(settings.fusionauth, http, SystemClock()))
        await diagnosis.run()
    return diagnosis.checks


def summary(checks: Sequence[Check]) -> str:
    failed = sum(check.failed for check in checks)
    skipped = sum(check.status == SKIP_MARK for check in checks)
    note = f" ({skipped} not checkable)" if skipped else ""
    if failed:
        return f"{failed} of {len(checks)} checks failed{note}."
    return f"All {len(checks) - skipped} checks passed{note}."


async def run_doctor(
    settings: Settings, *, out: TextIO, err: TextIO, wait: float = 0.0, interval: float = RETRY_INTERVAL
) -> int:
    """Print one line per check to `out`; 0 if nothing failed, else 1.

    With `wait` > 0, repeat until every check passes or `wait` seconds have passed (a container can start before
    FusionAuth has finished its kickstart); progress goes to `err`, the last run's lines to `out`.
    """
    deadline = time.monotonic() + wait
    while True:
        checks = await diagnose(settings)
        failed = [check for check in checks if check.failed]
        remaining = deadline - time.monotonic()
        if not failed or remaining < interval:
            break
        err.write(f"stepup-bff doctor: {len(failed)} failing ({failed[0].message}); retrying for {remaining:.0f} s\n")
        err.flush()
        await asyncio.sleep(interval)
    for check in checks:
        out.write(check.line() + "\n")
    out.write(summary(checks) + "\n")
    return 1 if failed else 0
