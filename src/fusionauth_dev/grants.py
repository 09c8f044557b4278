"""Refresh tokens and SSO sessions: creation and revocation."""

from __future__ import annotations

import dataclasses

from fusionauth_dev import identifiers, tokens
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.directory import Directory, RefreshToken, SsoSession, Tenant, User


def issue_refresh_token(
    directory: Directory,
    authentication: Authentication,
    *,
    origin: str,
    used_pkce: bool = False,
    sso_session_id: str | None = None,
    grant_types: tuple[str, ...] = (),
) -> RefreshToken:
    now = directory.now()
    application = authentication.application
    refresh = RefreshToken(
        id=identifiers.new_uuid(),
        token=identifiers.opaque_token(),
        user_id=authentication.user.id,
        tenant_id=authentication.tenant.id,
        application_id=None if application is None else application.id,
        scopes=authentication.scopes,
        auth_time=authentication.auth_time,
        authentication_type=authentication.authentication_type,
        start_instant=now,
        expires_at=now + tokens.refresh_token_ttl_seconds(authentication.tenant, application),
        origin=origin,
        used_pkce=used_pkce,
        sso_session_id=sso_session_id,
        grant_types=grant_types,
    )
    directory.refresh_tokens[refresh.id] = refresh
    return refresh


def rotate_refresh_token(directory: Directory, refresh: RefreshToken) -> RefreshToken:
    """OneTimeUse policy: the presented token is spent and a new one (same id lineage data) replaces it."""
    del directory.refresh_tokens[refresh.id]
    rotated = dataclasses.replace(refresh, id=identifiers.new_uuid(), token=identifiers.opaque_token())
    directory.refresh_tokens[rotated.id] = rotated
    return rotated


def revoke_refresh_tokens(
    directory: Directory, *, user_id: str | None = None, application_id: str | None = None
) -> int:
    doomed = [
        refresh
        for refresh in directory.refresh_tokens.values()
        if (user_id is None or refresh.user_id == user_id)
        and (application_id is None or refresh.application_id == application_id)
    ]
    for refresh in doomed:
        del directory.refresh_tokens[refresh.id]
    if doomed:
        # FusionAuth fires the event only when a valid token was revoked (docs/fusionauth.md §14).
        _revoked(directory, doomed[0], user_id=user_id, application_id=application_id, one=None)
    return len(doomed)


def revoke_refresh_token(directory: Directory, refresh: RefreshToken) -> None:
    del directory.refresh_tokens[refresh.id]
    _revoked(directory, refresh, user_id=refresh.user_id, application_id=refresh.application_id, one=refresh)


def _revoked(
    directory: Directory,
    sample: RefreshToken,
    *,
    user_id: str | None,
    application_id: str | None,
    one: RefreshToken | None,
) -> None:
    """jwt.refresh-token.revoke: for one token (with `refreshToken`), a user's (`userId`, and `applicationId` when
    only that application's), or an application's (`applicationId` alone)."""
    fields: dict[str, object] = {}
    if user_id is not None:
        fields["userId"] = user_id
        user = directory.users.get(user_id)
        if user is not None:
            fields["user"] = user.to_json()
    if application_id is not None:
        fields["applicationId"] = application_id
        application = directory.applications.get(application_id)
        fields["applicationTimeToLiveInSeconds"] = {
            application_id: tokens.access_token_ttl(directory.tenant_of(sample.tenant_id), application)
        }
    if one is not None:
        fields["refreshToken"] = {
            "id": one.id,
            "token": one.token,
            "userId": one.user_id,
            "applicationId": one.application_id,
            "tenantId": one.tenant_id,
            "startInstant": int(one.start_instant * 1000),
        }
    directory.events.emit(directory, "jwt.refresh-token.revoke", tenant_id=sample.tenant_id, **fields)


def start_sso_session(directory: Directory, *, user: User, tenant: Tenant, authentication_type: str) -> SsoSession:
    now = directory.now()
    session = SsoSession(
        id=identifiers.new_uuid(),
        user_id=user.id,
        tenant_id=tenant.id,
        auth_time=int(now),
        authentication_type=authentication_type,
        expires_at=now + tenant.session_ttl,
    )
    directory.sso_sessions[session.id] = session
    return session


def touch_sso_session(directory: Directory, session: SsoSession) -> None:
    # The SSO session is an inactivity timeout (tenant.httpSessionMaxInactiveInterval).
    session.expires_at = directory.now() + directory.tenant_of(session.tenant_id).session_ttl
