"""What every way of signing in shares: lockout, the second-factor decision, and the Login API response.

Used by ``POST /api/login``, ``POST /api/two-factor/login`` and the hosted login page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fusionauth_dev import grants, identifiers, tokens
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.directory import ActiveAction, Application, Directory, Tenant, TwoFactorTrust, User
from fusionauth_dev.errors import Gone, LoginPrevented

_UNIT_SECONDS = {
    "MINUTES": 60,
    "HOURS": 3600,
    "DAYS": 86400,
    "WEEKS": 7 * 86400,
    "MONTHS": 30 * 86400,
    "YEARS": 365 * 86400,
}
# Login policies that ask a user with a second factor for it on every sign-in ("Required" also one without: they must
# set one up). The risk-based ones (ChallengeOnHighRisk/MediumRisk) need FusionAuth's risk engine, which the dev server
# has not: it never challenges.
_CHALLENGING_POLICIES = ("Enabled", "Required")
_MFA_METHODS = ("authenticator", "email", "sms")


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


def ensure_not_expired(directory: Directory, user: User) -> None:
    """410, empty, for a user whose ``expiry`` has passed (docs/fusionauth.md §4, §5)."""
    if user.expired(directory.now_millis()):
        raise Gone()


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


def login_policy(tenant: Tenant, application: Application | None) -> str:
    """The MFA login policy in force: an application's own policy supersedes its tenant's (FusionAuth's *Contextual
    Multi-Factor Authentication* docs; application-level MFA is an Enterprise feature)."""
    if application is not None and application.mfa_login_policy is not None:
        return application.mfa_login_policy
    return tenant.mfa_login_policy


def second_factor_due(
    directory: Directory, tenant: Tenant, application: Application | None, user: User, trust_id: str | None
) -> str | None:
    """None: no second factor now; "challenge": one of the user's methods; "configure": the policy is Required and
    the user has no method yet (a 242 with ``configurableMethods``, docs/fusionauth.md §5)."""
    policy = login_policy(tenant, application)
    if policy not in _CHALLENGING_POLICIES:
        return None
    if not user.methods:
        return "configure" if policy == "Required" else None
    return None if two_factor_trusted(directory, user, trust_id) else "challenge"


def configurable_methods(tenant: Tenant) -> list[str]:
    return [method for method in _MFA_METHODS if tenant.mfa_method_enabled(method)]


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
    """The Login API's success response (docs/fusionauth.md §4, §5): 200, or one of its conditional successes.

    [inferred] The docs list the conditions but not their order; here a required password change (203, no tokens)
    comes first, then not registered for the application (202), an unverified email (212, when the tenant verifies
    email addresses) and an unverified registration (213, when the application verifies registrations)."""
    tenant = directory.tenant_of(user.tenant_id)
    clear_failed_attempts(directory, user)
    if user.data.get("passwordChangeRequired"):
        reason = str(user.data.get("passwordChangeReason") or "Administrative")
        return LoginResult(
            status=203, body={"changePasswordId": identifiers.opaque_token(), "changePasswordReason": reason}
        )
    registration = None if application is None else user.registration(application.id)
    registered = application is None or registration is not None
    record_login(directory, user, application)
    if not registered:
        status = 202
    elif tenant.verify_email and not user.data.get("verified", True):
        status = 212
    elif application is not None and application.verify_registration and not (registration or {}).get("verified"):
        status = 213
    else:
        status = 200
    result = LoginResult(status=status, body={"user": user.to_json()})
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
