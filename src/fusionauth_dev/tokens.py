"""JWTs with FusionAuth's claims (docs/fusionauth.md §6.6), signed RS256 with the tenant's or application's key.

The only python-jose importer in the package.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from jose import JWTError, jwt

from fusionauth_dev import identifiers
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.directory import Application, Directory, Tenant, User
from fusionauth_dev.keys import SigningKey

# Leeway when validating our own tokens; the server and its clients share a clock in development.
_LEEWAY_SECONDS = 0


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    expires_at: int


def _jwt_settings(tenant: Tenant, application: Application | None) -> dict[str, Any]:
    # An application's own JWT settings apply only when it enables them (docs/fusionauth.md §6.6,
    # "jwtConfiguration.enabled").
    if application is not None and application.jwt.get("enabled"):
        return application.jwt
    return tenant.jwt


def access_token_ttl(tenant: Tenant, application: Application | None) -> int:
    return int(
        _jwt_settings(tenant, application).get("timeToLiveInSeconds") or tenant.jwt.get("timeToLiveInSeconds") or 3600
    )


def refresh_token_ttl_seconds(tenant: Tenant, application: Application | None) -> int:
    settings = _jwt_settings(tenant, application)
    minutes = (
        settings.get("refreshTokenTimeToLiveInMinutes") or tenant.jwt.get("refreshTokenTimeToLiveInMinutes") or 43200
    )
    return int(minutes) * 60


def refresh_token_usage_policy(tenant: Tenant, application: Application | None) -> str:
    return str(_jwt_settings(tenant, application).get("refreshTokenUsagePolicy") or "Reusable")


def _key(directory: Directory, tenant: Tenant, application: Application | None, which: str) -> SigningKey:
    settings = _jwt_settings(tenant, application)
    return directory.signing_key(settings.get(which) or tenant.jwt.get(which))


def _sign(key: SigningKey, claims: dict[str, Any], extra_headers: dict[str, Any] | None = None) -> str:
    headers: dict[str, Any] = {"kid": key.kid, "typ": "JWT"}
    if extra_headers:
        headers.update(extra_headers)
    return jwt.encode(claims, key.private_pem(), algorithm=key.algorithm, headers=headers)


def _scope_claims(user: User, scopes: tuple[str, ...]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in scopes and user.email is not None:
        claims["email"] = user.email
        claims["email_verified"] = bool(user.data.get("verified", True))
    if "profile" in scopes:
        profile = {
            "name": user.full_name,
            "given_name": user.data.get("firstName"),
            "middle_name": user.data.get("middleName"),
            "family_name": user.data.get("lastName"),
            "preferred_username": user.username or user.email,
            "picture": user.data.get("imageUrl"),
            "birthdate": user.data.get("birthDate"),
        }
        claims.update({name: value for name, value in profile.items() if value})
    if "phone" in scopes and user.data.get("mobilePhone"):
        claims["phone_number"] = user.data["mobilePhone"]
        claims["phone_number_verified"] = False
    return claims


def _claims(directory: Directory, authentication: Authentication) -> dict[str, Any]:
    """The claims access and id tokens share (docs/fusionauth.md §6.6); both live as long as the access token."""
    now = int(directory.now())
    tenant = authentication.tenant
    return {
        "iss": tenant.issuer,
        "sub": authentication.user.id,
        "iat": now,
        "exp": now + access_token_ttl(tenant, authentication.application),
        "jti": identifiers.new_uuid(),
        "authenticationType": authentication.authentication_type,
        "auth_time": authentication.auth_time,
        "tid": tenant.id,
    }


def issue_access_token(
    directory: Directory,
    authentication: Authentication,
    *,
    refresh_token_id: str | None,
    grant_types: tuple[str, ...] = (),
) -> IssuedToken:
    claims = _claims(directory, authentication)
    application = authentication.application
    if application is not None:
        claims["aud"] = application.id
        registration = authentication.user.registration(application.id)
        if registration is not None:
            # applicationId and roles are present only for a registered user (docs/fusionauth.md §6.6).
            claims["applicationId"] = application.id
            claims["roles"] = list(registration.get("roles") or [])
    if authentication.scopes:
        claims["scope"] = " ".join(authentication.scopes)
    if refresh_token_id is not None:
        # In the access token `sid` is the refresh token's id (docs/fusionauth.md §6.6, since 1.37).
        claims["sid"] = refresh_token_id
    headers = {"gty": list(grant_types)} if grant_types else None
    key = _key(directory, authentication.tenant, application, "accessTokenKeyId")
    expires_at = int(claims["exp"])
    return IssuedToken(_sign(key, claims, headers), expires_at - int(claims["iat"]), expires_at)


def _half_hash(value: str) -> str:
    digest = hashlib.sha256(value.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode("ascii")


def issue_id_token(
    directory: Directory,
    authentication: Authentication,
    *,
    nonce: str | None,
    sso_session_id: str | None,
    access_token: str,
    code: str | None = None,
) -> str:
    application = authentication.application
    if application is None:
        raise ValueError("an id token is issued to an application: its id is the aud claim")
    claims = _claims(directory, authentication)
    claims["aud"] = application.id
    claims["at_hash"] = _half_hash(access_token)
    claims["scope"] = " ".join(authentication.scopes)
    if nonce:
        claims["nonce"] = nonce
    if code is not None:
        claims["c_hash"] = _half_hash(code)
    if sso_session_id is not None:
        # In the id token `sid` is the SSO session id (docs/fusionauth.md §6.6).
        claims["sid"] = sso_session_id
    claims.update(_scope_claims(authentication.user, authentication.scopes))
    key = _key(directory, authentication.tenant, application, "idTokenKeyId")
    return _sign(key, claims)


def userinfo_claims(user: User, claims: dict[str, Any]) -> dict[str, Any]:
    scopes = tuple(str(claims.get("scope", "")).split())
    result: dict[str, Any] = {"sub": user.id}
    if "applicationId" in claims:
        result["applicationId"] = claims["applicationId"]
        result["roles"] = claims.get("roles", [])
    result.update(_scope_claims(user, scopes))
    return result


def verify(directory: Directory, token: str) -> dict[str, Any] | None:
    """The claims of a token this server signed and that has not expired; None otherwise."""
    try:
        header = jwt.get_unverified_header(token)
    except JWTError:
        return None
    key = directory.key_by_kid(str(header.get("kid", "")))
    if key is None:
        return None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_pem(),
            algorithms=[key.algorithm],
            options={"verify_aud": False, "verify_exp": False, "leeway": _LEEWAY_SECONDS},
        )
    except JWTError:
        return None
    # Expiry against the injected clock, not the wall clock, so tests can expire tokens.
    if int(claims.get("exp", 0)) <= directory.now():
        return None
    tenant = directory.tenants.get(str(claims.get("tid")))
    if tenant is None or claims.get("iss") != tenant.issuer:
        return None
    return claims


def audience_hint(directory: Directory, token: str) -> str | None:
    """The ``aud`` of an id token this server signed, expired or not (for ``id_token_hint``)."""
    try:
        header = jwt.get_unverified_header(token)
        key = directory.key_by_kid(str(header.get("kid", "")))
        if key is None:
            return None
        claims = jwt.decode(
            token, key.public_pem(), algorithms=[key.algorithm], options={"verify_aud": False, "verify_exp": False}
        )
    except JWTError:
        return None
    audience = claims.get("aud")
    return str(audience) if isinstance(audience, str) else None
