"""What every way of signing in shares: lockout, the second-factor decision, and the Login API response.

Used by ``POST /api/login``, ``POST /api/two-factor/login`` and the hosted login page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusionauth_dev import grants, identifiers, tokens
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.directory import ActiveAction, Application, Directory, Tenant, TwoFactorTrust, User
from fusionauth_dev.errors import LoginPrevented

_UNIT_SECONDS = {
    "MINUTES": 60,
    "HOURS": 3600,
    "DAYS": 86400,
    "WEEKS": 7 * 86400,
    "MONTHS": 30 * 86400,
    "YEARS": 365 * 86400,
}
# Login policies that ask a user with a second factor for it on every sign-in. The risk-based ones
# (ChallengeOnHighRisk/MediumRisk) need FusionAuth's risk engine, which the dev server has not: it never challenges.
_CHALLENGING_POLICIES = ("Enabled", "Required")


@dataclass
class Cookie:
    name: str
    value: str
    max_age: int | None = None


@dataclass
class LoginResult:
    status: int
    body: dict[str, Any]
    cookies: list[Cookie] = field(default_factory=list)


def ensure_login_allowed(directory: Directory, user: User) -> None:
    """409 with ``actions`` while a login-preventing user action is active (docs/fusionauth.md §4, §5)."""
    actions = directory.actions_preventing_login(user.id)
    if actions:
        raise LoginPrevented([_action_json(directory, action) for action in actions])


def _action_json(directory: Directory, action: ActiveAction) -> dict[str, Any]:
    definition = directory.user_actions.get(action.action_id, {})
    return {
        "actionId": action.action_id,
        "expiry": int(action.expires_at * 1000),
        "localizedName": definition.get("name"),
        "name": definition.get("name"),
        "reason": "Too many failed authentication attempts",
    }


def record_failed_attempt(directory: Directory, user: User) -> None:
    """Counts a wrong password or second-factor code toward the tenant's lockout.

    FusionAuth acts only when ``failedAuthenticationConfiguration.userActionId`` names a login-preventing action
    (docs/fusionauth.md §4). [inferred] Wrong two-factor codes count too (FusionAuth's theme has a message for "too many
    two-factor attempts"), and the attempt that reaches the limit still gets its normal answer (404/421); the lock
    applies from the next attempt on.
    """
    tenant = directory.tenant_of(user.tenant_id)
    config = tenant.failed_authentication
    action_id = config.get("userActionId")
    if not action_id or not directory.user_actions.get(str(action_id), {}).get("preventLogin"):
        return
    now = directory.now()
    window = int(config.get("resetCountInSeconds") or 60)
    attempts = [at for at in directory.failed_logins.get(user.id, []) if at > now - window]
    attempts.append(now)
    if len(attempts) >= int(config.get("tooManyAttempts") or 5):
        duration = int(config.get("actionDuration") or 3) * _UNIT_SECONDS.get(
            str(config.get("actionDurationUnit") or "MINUTES"), 60
        )
        directory.active_actions.append(
            ActiveAction(action_id=str(action_id), user_id=user.id, start=now, expires_at=now + duration)
        )
        attempts = []
    directory.failed_logins[user.id] = attempts


def clear_failed_attempts(directory: Directory, user: User) -> None:
    directory.failed_logins.pop(user.id, None)


def public_method(method: dict[str, Any]) -> dict[str, Any]:
    """A method as the two-factor APIs list it (docs/fusionauth.md §2); never the secret."""
    result: dict[str, Any] = {"id": method["id"], "method": method["method"]}
    for name in ("name", "lastUsed", "email", "mobilePhone", "authenticator"):
        if method.get(name) is not None:
            result[name] = method[name]
    return result


def two_factor_trusted(directory: Directory, user: User, trust_id: str | None) -> bool:
    if not trust_id:
        return False
    trust = directory.two_factor_trusts.get(trust_id)
    return trust is not None and trust.user_id == user.id and trust.expires_at > directory.now()


def needs_second_factor(directory: Directory, tenant: Tenant, user: User, trust_id: str | None) -> bool:
    if tenant.mfa_login_policy not in _CHALLENGING_POLICIES or not user.methods:
        return False
    return not two_factor_trusted(directory, user, trust_id)


def trust_this_computer(directory: Directory, user: User, tenant: Tenant) -> TwoFactorTrust:
    trust = TwoFactorTrust(
        id=identifiers.opaque_token(), user_id=user.id, expires_at=directory.now() + tenant.two_factor_trust_ttl
    )
    directory.two_factor_trusts[trust.id] = trust
    return trust


def record_login(directory: Directory, user: User, application: Application | None) -> None:
    now_ms = directory.now_millis()
    user.data["lastLoginInstant"] = now_ms
    if application is not None:
        registration = user.registration(application.id)
        if registration is not None:
            registration["lastLoginInstant"] = now_ms


def complete_login(
    directory: Directory,
    *,
    user: User,
    application: Application | None,
    no_jwt: bool,
    authentication_type: str,
) -> LoginResult:
    """The Login API's success response (docs/fusionauth.md §4, §5): 200, or 202 when not registered for the
    application."""
    tenant = directory.tenant_of(user.tenant_id)
    registered = application is None or user.registration(application.id) is not None
    record_login(directory, user, application)
    clear_failed_attempts(directory, user)
    result = LoginResult(status=200 if registered else 202, body={"user": user.to_json()})
    if no_jwt:
        return result
    authentication = Authentication(
        user=user,
        tenant=tenant,
        application=application,
        scopes=(),
        auth_time=int(directory.now()),
        authentication_type=authentication_type,
    )
    refresh_id: str | None = None
    if application is not None and registered and application.login_generates_refresh_tokens:
        refresh = grants.issue_refresh_token(directory, authentication, origin="login")
        refresh_id = refresh.id
        result.body["refreshToken"] = refresh.token
        result.body["refreshTokenId"] = refresh.id
        result.cookies.append(Cookie("refresh_token", refresh.token, int(refresh.expires_at - directory.now())))
    issued = tokens.issue_access_token(directory, authentication, refresh_token_id=refresh_id)
    result.body["token"] = issued.token
    result.body["tokenExpirationInstant"] = issued.expires_at * 1000
    # FusionAuth also sets these as HttpOnly cookies (access_token a session cookie, refresh_token persistent); a
    # BFF must not relay them (docs/fusionauth.md §4).
    result.cookies.insert(0, Cookie("access_token", issued.token))
    return result
