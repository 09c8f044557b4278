"""The dev server's whole state, in memory: tenants, applications, users, keys, and the short-lived grants.

Tenants, applications and users keep FusionAuth's own JSON as their source of truth (so ``GET /api/application``
returns what was stored and ``PATCH`` merges into it); the typed properties below read the settings the server acts on,
with FusionAuth's defaults where a field is unset.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from fusionauth_dev import identifiers
from fusionauth_dev.clock import Clock, epoch_millis
from fusionauth_dev.events import Webhooks
from fusionauth_dev.keys import SigningKey
from fusionauth_dev.outbox import Outbox
from fusionauth_dev.patching import deep_defaults

# FusionAuth's own admin application: fixed id in every install (docs/fusionauth.md §9, FUSIONAUTH_APPLICATION_ID).
ADMIN_APPLICATION_ID = "3c219e58-ed0e-4b18-ad48-f4f92793ae32"
# FusionAuth's default issuer for a fresh tenant; kickstart normally replaces it.
DEFAULT_ISSUER = "acme.com"

# FusionAuth's default password hashing: salted PBKDF2-HMAC-SHA256, factor 24000.
_PBKDF2_ITERATIONS = 24_000


def _get(data: dict[str, Any], *path: str, default: Any = None) -> Any:
    node: Any = data
    for name in path:
        if not isinstance(node, dict) or name not in node:
            return default
        node = node[name]
    return default if node is None else node


def default_tenant_json(tenant_id: str, signing_key_id: str) -> dict[str, Any]:
    """The settings a fresh FusionAuth default tenant has (docs/fusionauth.md §2-§7 defaults)."""
    return {
        "id": tenant_id,
        "name": "Default",
        "issuer": DEFAULT_ISSUER,
        "state": "Active",
        "httpSessionMaxInactiveInterval": 3600,
        "loginConfiguration": {"requireAuthentication": True},
        "jwtConfiguration": {
            "enabled": True,
            "accessTokenKeyId": signing_key_id,
            "idTokenKeyId": signing_key_id,
            "timeToLiveInSeconds": 3600,
            "refreshTokenTimeToLiveInMinutes": 43200,
            "refreshTokenUsagePolicy": "Reusable",
            "refreshTokenExpirationPolicy": "Fixed",
        },
        "externalIdentifierConfiguration": {
            "authorizationGrantIdTimeToLiveInSeconds": 30,
            "trustTokenTimeToLiveInSeconds": 180,
            "twoFactorIdTimeToLiveInSeconds": 300,
            "twoFactorOneTimeCodeIdGenerator": {"length": 6, "type": "randomDigits"},
            "twoFactorOneTimeCodeIdTimeToLiveInSeconds": 60,
            "twoFactorTrustIdTimeToLiveInSeconds": 2592000,
        },
        "multiFactorConfiguration": {
            "loginPolicy": "Enabled",
            "authenticator": {"enabled": True, "algorithm": "HmacSHA1", "codeLength": 6, "timeStep": 30},
            "email": {"enabled": False},
            "sms": {"enabled": False},
        },
        "failedAuthenticationConfiguration": {
            "actionDuration": 3,
            "actionDurationUnit": "MINUTES",
            "emailUser": False,
            "resetCountInSeconds": 60,
            "tooManyAttempts": 5,
        },
        "emailConfiguration": {
            "host": "localhost",
            "port": 25,
            "security": "NONE",
            "defaultFromEmail": "change-me@example.com",
            "defaultFromName": "FusionAuth",
        },
    }


def default_application_json(application_id: str, tenant_id: str) -> dict[str, Any]:
    return {
        "id": application_id,
        "tenantId": tenant_id,
        "active": True,
        "state": "Active",
        "roles": [],
        "oauthConfiguration": {
            "authorizedOriginURLs": [],
            "authorizedRedirectURLs": [],
            "authorizedURLValidationPolicy": "ExactMatch",
            "clientAuthenticationPolicy": "Required",
            "clientId": application_id,
            "enabledGrants": ["authorization_code", "refresh_token"],
            "generateRefreshTokens": True,
            "logoutBehavior": "AllApplications",
            "proofKeyForCodeExchangePolicy": "NotRequired",
            "requireRegistration": False,
            "scopeHandlingPolicy": "Strict",
            "unknownScopePolicy": "Reject",
        },
        "loginConfiguration": {
            "allowTokenRefresh": False,
            "generateRefreshTokens": False,
            "requireAuthentication": True,
        },
        "jwtConfiguration": {
            "enabled": False,
            "timeToLiveInSeconds": 3600,
            "refreshTokenTimeToLiveInMinutes": 43200,
            "refreshTokenUsagePolicy": "Reusable",
            "refreshTokenExpirationPolicy": "Fixed",
        },
        "registrationConfiguration": {"enabled": False},
        "verifyRegistration": False,
    }


@dataclass
class Tenant:
    id: str
    data: dict[str, Any]

    @property
    def issuer(self) -> str:
        return str(_get(self.data, "issuer", default=DEFAULT_ISSUER))

    def _ext(self, name: str, default: int) -> int:
        return int(_get(self.data, "externalIdentifierConfiguration", name, default=default))

    @property
    def two_factor_id_ttl(self) -> int:
        return self._ext("twoFactorIdTimeToLiveInSeconds", 300)

    @property
    def one_time_code_ttl(self) -> int:
        return self._ext("twoFactorOneTimeCodeIdTimeToLiveInSeconds", 60)

    @property
    def one_time_code_length(self) -> int:
        return int(
            _get(self.data, "externalIdentifierConfiguration", "twoFactorOneTimeCodeIdGenerator", "length", default=6)
        )

    @property
    def trust_token_ttl(self) -> int:
        return self._ext("trustTokenTimeToLiveInSeconds", 180)

    @property
    def two_factor_trust_ttl(self) -> int:
        return self._ext("twoFactorTrustIdTimeToLiveInSeconds", 2592000)

    @property
    def authorization_code_ttl(self) -> int:
        return self._ext("authorizationGrantIdTimeToLiveInSeconds", 30)

    @property
    def session_ttl(self) -> int:
        return int(_get(self.data, "httpSessionMaxInactiveInterval", default=3600))

    @property
    def mfa_login_policy(self) -> str:
        return str(_get(self.data, "multiFactorConfiguration", "loginPolicy", default="Enabled"))

    def mfa_method_enabled(self, method: str) -> bool:
        return bool(_get(self.data, "multiFactorConfiguration", method, "enabled", default=method == "authenticator"))

    def mfa_template_id(self, method: str) -> str | None:
        value = _get(self.data, "multiFactorConfiguration", method, "templateId")
        return None if value is None else str(value)

    @property
    def verify_email(self) -> bool:
        return bool(_get(self.data, "emailConfiguration", "verifyEmail", default=False))

    @property
    def require_api_key_for_login(self) -> bool:
        return bool(_get(self.data, "loginConfiguration", "requireAuthentication", default=True))

    @property
    def logout_url(self) -> str | None:
        value = _get(self.data, "logoutURL")
        return str(value) if value else None

    @property
    def jwt(self) -> dict[str, Any]:
        return dict(_get(self.data, "jwtConfiguration", default={}))

    @property
    def failed_authentication(self) -> dict[str, Any]:
        return dict(_get(self.data, "failedAuthenticationConfiguration", default={}))


@dataclass
class Application:
    id: str
    data: dict[str, Any]

    @property
    def tenant_id(self) -> str:
        return str(self.data["tenantId"])

    @property
    def name(self) -> str:
        return str(_get(self.data, "name", default=""))

    def _oauth(self, name: str, default: Any) -> Any:
        return _get(self.data, "oauthConfiguration", name, default=default)

    @property
    def client_secret(self) -> str:
        return str(self._oauth("clientSecret", ""))

    @property
    def redirect_urls(self) -> list[str]:
        return [str(url) for url in self._oauth("authorizedRedirectURLs", [])]

    @property
    def logout_url(self) -> str | None:
        value = self._oauth("logoutURL", None)
        return str(value) if value else None

    @property
    def client_authentication_policy(self) -> str:
        return str(self._oauth("clientAuthenticationPolicy", "Required"))

    @property
    def pkce_policy(self) -> str:
        return str(self._oauth("proofKeyForCodeExchangePolicy", "NotRequired"))

    @property
    def enabled_grants(self) -> list[str]:
        return [str(grant) for grant in self._oauth("enabledGrants", [])]

    @property
    def oauth_generates_refresh_tokens(self) -> bool:
        return bool(self._oauth("generateRefreshTokens", False))

    @property
    def require_registration(self) -> bool:
        return bool(self._oauth("requireRegistration", False))

    @property
    def unknown_scope_policy(self) -> str:
        return str(self._oauth("unknownScopePolicy", "Reject"))

    @property
    def custom_scopes(self) -> list[str]:
        return [str(scope["name"]) for scope in _get(self.data, "scopes", default=[]) if "name" in scope]

    @property
    def mfa_login_policy(self) -> str | None:
        """The application's own MFA login policy, when it sets one; it supersedes the tenant's."""
        value = _get(self.data, "multiFactorConfiguration", "loginPolicy")
        return None if value is None else str(value)

    @property
    def verify_registration(self) -> bool:
        return bool(_get(self.data, "verifyRegistration", default=False))

    @property
    def login_requires_api_key(self) -> bool:
        return bool(_get(self.data, "loginConfiguration", "requireAuthentication", default=True))

    @property
    def login_generates_refresh_tokens(self) -> bool:
        return bool(_get(self.data, "loginConfiguration", "generateRefreshTokens", default=False))

    @property
    def login_allows_token_refresh(self) -> bool:
        return bool(_get(self.data, "loginConfiguration", "allowTokenRefresh", default=False))

    @property
    def jwt(self) -> dict[str, Any]:
        return dict(_get(self.data, "jwtConfiguration", default={}))

    @property
    def default_roles(self) -> list[str]:
        return [str(role["name"]) for role in _get(self.data, "roles", default=[]) if role.get("isDefault")]


@dataclass
class User:
    id: str
    tenant_id: str
    data: dict[str, Any]
    password_hash: str = ""
    # Authenticator secrets by method id, kept out of ``data`` so no API response leaks them.
    secrets: dict[str, str] = field(default_factory=dict)
    # SHA-256 hashes of the unused recovery codes: since 1.68 FusionAuth hashes them at rest and shows them only once,
    # in the answer that enabled the first method (docs/fusionauth.md §8).
    recovery_codes: set[str] = field(default_factory=set)

    @property
    def email(self) -> str | None:
        value = _get(self.data, "email")
        return None if value is None else str(value)

    @property
    def username(self) -> str | None:
        value = _get(self.data, "username")
        return None if value is None else str(value)

    @property
    def login_label(self) -> str:
        return self.email or self.username or self.id

    @property
    def methods(self) -> list[dict[str, Any]]:
        return list(_get(self.data, "twoFactor", "methods", default=[]))

    @property
    def active(self) -> bool:
        """False once deactivated (a soft delete; FusionAuth's admin UI calls it locking the account)."""
        return bool(_get(self.data, "active", default=True))

    def expired(self, now_millis: int) -> bool:
        expiry = _get(self.data, "expiry")
        return isinstance(expiry, int | float) and expiry <= now_millis

    def method(self, method_id: str) -> dict[str, Any] | None:
        return next((m for m in self.methods if m.get("id") == method_id), None)

    def registration(self, application_id: str) -> dict[str, Any] | None:
        registrations = _get(self.data, "registrations", default=[])
        return next((r for r in registrations if r.get("applicationId") == application_id), None)

    @property
    def full_name(self) -> str | None:
        if self.data.get("fullName"):
            return str(self.data["fullName"])
        parts = [str(self.data[name]) for name in ("firstName", "lastName") if self.data.get(name)]
        return " ".join(parts) or None

    def set_password(self, password: str) -> None:
        salt = secrets.token_bytes(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ITERATIONS)
        self.password_hash = f"{salt.hex()}${digest.hex()}"

    def check_password(self, password: str) -> bool:
        if not self.password_hash:
            return False
        salt_hex, digest_hex = self.password_hash.split("$")
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex), _PBKDF2_ITERATIONS)
        return hmac.compare_digest(digest.hex(), digest_hex)

    def to_json(self) -> dict[str, Any]:
        """The User object as FusionAuth's APIs return it: no password, no authenticator secrets."""
        data = copy.deepcopy(self.data)
        for method in _get(data, "twoFactor", "methods", default=[]):
            method.pop("secret", None)
        data.get("twoFactor", {}).pop("recoveryCodes", None)
        return data


@dataclass
class ApiKey:
    id: str
    key: str
    data: dict[str, Any]

    @property
    def endpoints(self) -> dict[str, frozenset[str]] | None:
        """None = unrestricted. FusionAuth treats a key without endpoint permissions as a super-user key."""
        raw = _get(self.data, "permissions", "endpoints", default={})
        if not raw:
            return None
        return {str(path): frozenset(str(m).upper() for m in methods) for path, methods in raw.items()}

    @property
    def key_manager(self) -> bool:
        return bool(_get(self.data, "keyManager", default=False))

    @property
    def tenant_id(self) -> str | None:
        value = _get(self.data, "tenantId")
        return None if value is None else str(value)

    def allows(self, endpoint: str, method: str) -> bool:
        endpoints = self.endpoints
        return endpoints is None or method.upper() in endpoints.get(endpoint, frozenset())

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


@dataclass
class AuthorizationCode:
    code: str
    application_id: str
    user_id: str
    tenant_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    sso_session_id: str
    auth_time: int
    authentication_type: str
    expires_at: float


@dataclass
class RefreshToken:
    id: str
    token: str
    user_id: str
    tenant_id: str
    application_id: str | None
    scopes: tuple[str, ...]
    auth_time: int
    authentication_type: str
    start_instant: float
    expires_at: float
    # How it was issued: "oauth" (token endpoint) or "login" (Login / Two-Factor Login API).
    origin: str
    used_pkce: bool = False
    sso_session_id: str | None = None
    grant_types: tuple[str, ...] = ()


@dataclass
class SsoSession:
    id: str
    user_id: str
    tenant_id: str
    auth_time: int
    authentication_type: str
    expires_at: float


@dataclass
class OneTimeCode:
    value: str
    expires_at: float
    method_id: str | None


@dataclass
class TwoFactorChallenge:
    id: str
    user_id: str
    tenant_id: str
    application_id: str | None
    expires_at: float
    state: Any = None
    trust_challenge: str | None = None
    codes: list[OneTimeCode] = field(default_factory=list)
    # "start" (Start Two-Factor API), "login" (242 from the Login API) or "oauth" (the hosted login page).
    origin: str = "start"
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrustToken:
    value: str
    user_id: str
    trust_challenge: str | None
    expires_at: float


@dataclass
class TwoFactorTrust:
    id: str
    user_id: str
    expires_at: float


@dataclass
class ActiveAction:
    action_id: str
    user_id: str
    start: float
    expires_at: float


class Directory:
    """Every stored object, keyed by id. Domain rules live in the modules that serve the endpoints."""

    def __init__(self, clock: Clock, *, default_tenant_id: str, default_signing_key_id: str) -> None:
        self.clock = clock
        self.outbox = Outbox(clock)
        self.default_tenant_id = default_tenant_id
        self.default_signing_key_id = default_signing_key_id
        now_ms = self.now_millis()
        # Real FusionAuth's built-in default key is HS256 (docs/fusionauth.md §6.6) and is never published in the JWKS;
        # the dev
        # server makes it RS256 so that even an unconfigured tenant issues tokens a relying party can verify.
        self.keys: dict[str, SigningKey] = {
            default_signing_key_id: SigningKey(
                id=default_signing_key_id, name="Default signing key", insert_instant=now_ms
            )
        }
        tenant_json = default_tenant_json(default_tenant_id, default_signing_key_id)
        tenant_json["insertInstant"] = tenant_json["lastUpdateInstant"] = now_ms
        self.tenants: dict[str, Tenant] = {default_tenant_id: Tenant(default_tenant_id, tenant_json)}
        admin_json = deep_defaults(
            default_application_json(ADMIN_APPLICATION_ID, default_tenant_id),
            {"name": "FusionAuth", "roles": [{"id": identifiers.new_uuid(), "name": "admin", "isDefault": False}]},
        )
        admin_json["oauthConfiguration"]["clientSecret"] = identifiers.client_secret()
        admin_json["insertInstant"] = admin_json["lastUpdateInstant"] = now_ms
        self.applications: dict[str, Application] = {
            ADMIN_APPLICATION_ID: Application(ADMIN_APPLICATION_ID, admin_json)
        }
        self.users: dict[str, User] = {}
        self.api_keys: dict[str, ApiKey] = {}
        self.user_actions: dict[str, dict[str, Any]] = {}
        self.email_templates: dict[str, dict[str, Any]] = {}
        self.authorization_codes: dict[str, AuthorizationCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.sso_sessions: dict[str, SsoSession] = {}
        self.challenges: dict[str, TwoFactorChallenge] = {}
        self.trust_tokens: dict[str, TrustToken] = {}
        self.two_factor_trusts: dict[str, TwoFactorTrust] = {}
        self.failed_logins: dict[str, list[float]] = {}
        self.active_actions: list[ActiveAction] = []
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.events = Webhooks()

    # -- time ---------------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def now_millis(self) -> int:
        return epoch_millis(self.clock.now())

    # -- lookups ------------------------------------------------------------------------------------------------
    @property
    def default_tenant(self) -> Tenant:
        return self.tenants[self.default_tenant_id]

    def tenant_of(self, tenant_id: str | None) -> Tenant:
        return self.tenants.get(tenant_id or self.default_tenant_id, self.default_tenant)

    def api_key_by_value(self, value: str) -> ApiKey | None:
        for api_key in self.api_keys.values():
            if hmac.compare_digest(api_key.key.encode(), value.encode()):
                return api_key
        return None

    def find_user(
        self, login_id: str, tenant_id: str | None = None, login_id_types: list[str] | None = None
    ) -> User | None:
        """Match ``loginId`` against email (case-insensitive) or username, as FusionAuth does by default."""
        wanted = login_id.strip().lower()
        types = set(login_id_types) if isinstance(login_id_types, list) and login_id_types else {"email", "username"}
        for user in self.users.values():
            if tenant_id is not None and user.tenant_id != tenant_id:
                continue
            if "email" in types and user.email is not None and user.email.lower() == wanted:
                return user
            if "username" in types and user.username is not None and user.username.lower() == wanted:
                return user
        return None

    def signing_key(self, key_id: str | None) -> SigningKey:
        if key_id is not None and key_id in self.keys:
            return self.keys[key_id]
        return self.keys[self.default_signing_key_id]

    def key_by_kid(self, kid: str) -> SigningKey | None:
        return next((key for key in self.keys.values() if key.kid == kid), None)

    # -- expiry -------------------------------------------------------------------------------------------------
    def live_challenge(self, two_factor_id: str) -> TwoFactorChallenge | None:
        challenge = self.challenges.get(two_factor_id)
        if challenge is None:
            return None
        if challenge.expires_at <= self.now():
            del self.challenges[two_factor_id]
            return None
        return challenge

    def live_refresh_token(self, token: str) -> RefreshToken | None:
        for refresh in self.refresh_tokens.values():
            if hmac.compare_digest(refresh.token.encode(), token.encode()):
                if refresh.expires_at <= self.now():
                    del self.refresh_tokens[refresh.id]
                    return None
                return refresh
        return None

    def live_sso_session(self, session_id: str | None) -> SsoSession | None:
        if not session_id:
            return None
        session = self.sso_sessions.get(session_id)
        if session is None:
            return None
        if session.expires_at <= self.now():
            del self.sso_sessions[session_id]
            return None
        return session

    def actions_preventing_login(self, user_id: str) -> list[ActiveAction]:
        now = self.now()
        self.active_actions = [action for action in self.active_actions if action.expires_at > now]
        return [
            action
            for action in self.active_actions
            if action.user_id == user_id and self.user_actions.get(action.action_id, {}).get("preventLogin")
        ]
