"""The runtime APIs a relying party calls: Two-Factor, Login, JWT and Status (docs/fusionauth.md §2-§5, §7)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from fusionauth_dev import enrolment, grants, identifiers, login, tokens, two_factor
from fusionauth_dev.access import (
    TENANT_HEADER,
    bearer_token,
    check_key_tenant,
    header_tenant,
    optional_api_key,
    require_api_key,
)
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.deps import DirectoryDep
from fusionauth_dev.directory import Application, Directory, TrustToken, User
from fusionauth_dev.errors import InvalidCode, Locked, NotFound, Unauthorized, ValidationFailed
from fusionauth_dev.keys import SigningKey
from fusionauth_dev.management import read_json_object

router = APIRouter()

_TRUST_COOKIE = "fusionauth.trust"


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValidationFailed.field(name, "invalid", f"[{name}] must be a string.")
    return value


def _required(body: dict[str, Any], name: str) -> str:
    value = _string(body, name)
    if value is None:
        raise ValidationFailed.field(name, "blank", f"You must specify [{name}].")
    return value


def _application(directory: Directory, application_id: str | None) -> Application | None:
    if application_id is None:
        return None
    application = directory.applications.get(application_id)
    if application is None:
        raise ValidationFailed.field("applicationId", "invalid", f"The application [{application_id}] does not exist.")
    return application


def _respond(result: login.LoginResult) -> Response:
    response = JSONResponse(result.body, status_code=result.status)
    for cookie in result.cookies:
        response.set_cookie(cookie.name, cookie.value, max_age=cookie.max_age, httponly=True, samesite="strict")
    return response


# -- two-factor ---------------------------------------------------------------------------------------------------


@router.post("/api/two-factor/start")
async def start_two_factor(request: Request, directory: DirectoryDep) -> Response:
    """Start a step-up challenge (docs/fusionauth.md §2). API key required; 404 for an unknown user."""
    api_key = require_api_key(directory, request.headers.get("authorization"), "/api/two-factor/start", "POST")
    body = await read_json_object(request)
    application = _application(directory, _string(body, "applicationId"))
    tenant_id = header_tenant(directory, request.headers.get(TENANT_HEADER))
    user: User | None
    user_id = _string(body, "userId")
    login_id = _string(body, "loginId")
    if user_id is not None:
        user = directory.users.get(user_id)  # userId wins when both are given
    elif login_id is not None:
        scope = tenant_id or (application.tenant_id if application else None) or api_key.tenant_id
        user = directory.find_user(login_id, scope, body.get("loginIdTypes"))
    else:
        raise ValidationFailed.field("loginId", "blank", "You must specify either the loginId or the userId.")
    if user is None or (api_key.tenant_id is not None and user.tenant_id != api_key.tenant_id):
        raise NotFound()
    code = _string(body, "code")
    challenge = two_factor.start(
        directory,
        user=user,
        application_id=None if application is None else application.id,
        origin="start",
        state=body.get("state"),
        trust_challenge=_string(body, "trustChallenge"),
        code=code,
    )
    payload: dict[str, Any] = {"code": challenge.codes[0].value, "twoFactorId": challenge.id}
    methods = two_factor.methods_json(user)
    if methods:  # omitted when the user has none (docs/fusionauth.md §2)
        payload["methods"] = methods
    return JSONResponse(payload)


@router.post("/api/two-factor/send/{two_factor_id}")
async def send_two_factor_code(two_factor_id: str, request: Request, directory: DirectoryDep) -> Response:
    """Send a code by an email/sms method (docs/fusionauth.md §3). Anonymous; empty 200.

    The docs list no 404 here; we infer 400 or 404 (docs/fusionauth.md §3) for an unknown or expired twoFactorId. The
    dev server
    answers 404, as ``/api/two-factor/login`` does for the same id.
    """
    body = await read_json_object(request)
    method_id = _required(body, "methodId")
    challenge = two_factor.live_challenge(directory, two_factor_id)
    two_factor.send(directory, challenge, method_id)
    return Response(status_code=200)


@router.post("/api/two-factor/login")
async def complete_two_factor_login(request: Request, directory: DirectoryDep) -> Response:
    """Complete a challenge (docs/fusionauth.md §4): 200 with user/token/state/trustToken, 421 wrong code, 404 unknown
    id."""
    body = await read_json_object(request)
    two_factor_id = _required(body, "twoFactorId")
    code = _required(body, "code")
    challenge = two_factor.live_challenge(directory, two_factor_id)
    user = directory.users[challenge.user_id]
    application = _application(directory, _string(body, "applicationId") or challenge.application_id)
    login.ensure_login_allowed(directory, user)
    matched, method_id = two_factor.match_code(directory, challenge, user, code)
    if not matched:
        # [inferred] The twoFactorId survives a wrong code until its TTL (docs/fusionauth.md §4).
        login.record_failed_attempt(directory, user)
        raise InvalidCode()
    del directory.challenges[challenge.id]
    two_factor.mark_last_used(user, method_id)
    tenant = directory.tenant_of(user.tenant_id)
    # [inferred] The docs name no authenticationType for a completed challenge: a 242 continues a password login;
    # a Start API challenge was proven with a one-time code.
    result = login.complete_login(
        directory,
        user=user,
        application=application,
        no_jwt=bool(body.get("noJWT")),
        authentication_type="PASSWORD" if challenge.origin == "login" else "ONE_TIME_PASSWORD",
    )
    trust = TrustToken(
        value=identifiers.opaque_token(),
        user_id=user.id,
        trust_challenge=challenge.trust_challenge,
        expires_at=directory.now() + tenant.trust_token_ttl,
    )
    directory.trust_tokens[trust.value] = trust
    result.body["trustToken"] = trust.value
    if challenge.state is not None:
        result.body["state"] = challenge.state
    if body.get("trustComputer"):
        computer = login.trust_this_computer(directory, user, tenant)
        result.body["twoFactorTrustId"] = computer.id
        result.cookies.append(login.Cookie(_TRUST_COOKIE, computer.id, tenant.two_factor_trust_ttl))
    return _respond(result)


# -- second factors the user adds and removes ---------------------------------------------------------------------


@router.get("/api/two-factor/secret")
async def generate_two_factor_secret(request: Request, directory: DirectoryDep) -> Response:
    """A fresh authenticator secret (docs/fusionauth.md §8): an API key, or the user's own JWT. Stores nothing."""
    authorization = request.headers.get("authorization")
    if _jwt_owner(directory, authorization) is None:
        require_api_key(directory, authorization, "/api/two-factor/secret", "GET")
    return JSONResponse(enrolment.generate_secret(), headers={"Cache-Control": "no-store"})


def _enrolling_user(directory: Directory, request: Request, user_id: str, method: str) -> User:
    """The user of an Enable/Disable Multi-Factor call with the API key: 401 for the key, 404 for the user (also for
    a user outside a tenant-scoped key's tenant, as the Start API answers)."""
    api_key = require_api_key(directory, request.headers.get("authorization"), "/api/user/two-factor", method)
    user = directory.users.get(user_id)
    if user is None or (api_key.tenant_id is not None and user.tenant_id != api_key.tenant_id):
        raise NotFound()
    return user


@router.post("/api/user/two-factor/{user_id}")
async def enable_two_factor(user_id: str, request: Request, directory: DirectoryDep) -> Response:
    """Add a method (docs/fusionauth.md §8): 200 with the recovery codes for the first method, else empty; 421 for a
    code the secret does not produce, 404 unknown user, 400 invalid."""
    user = _enrolling_user(directory, request, user_id, "POST")
    body = await read_json_object(request)
    payload = enrolment.enable(
        directory,
        user,
        method=_string(body, "method"),
        code=_string(body, "code"),
        secret=_string(body, "secret"),
        secret_base32=_string(body, "secretBase32Encoded"),
        name=_string(body, "name"),
        two_factor_id=_string(body, "twoFactorId"),
    )
    if payload is None:
        return Response(status_code=200)
    return JSONResponse(payload, headers={"Cache-Control": "no-store"})


@router.delete("/api/user/two-factor/{user_id}")
async def disable_two_factor(user_id: str, request: Request, directory: DirectoryDep) -> Response:
    """Remove a method (docs/fusionauth.md §8), named with ``methodId`` and ``code`` in the query or in a JSON body:
    a current code of it removes it, a recovery code every method. Empty 200; 421 wrong code, 404 unknown user."""
    user = _enrolling_user(directory, request, user_id, "DELETE")
    body = await read_json_object(request)
    params = request.query_params
    enrolment.disable(
        directory,
        user,
        method_id=params.get("methodId") or _string(body, "methodId"),
        code=params.get("code") or _string(body, "code"),
    )
    return Response(status_code=200)


# -- login --------------------------------------------------------------------------------------------------------


@router.post("/api/login")
async def login_api(request: Request, directory: DirectoryDep) -> Response:
    """The Login API (docs/fusionauth.md §5): 200 or a conditional success (202/203/212/213), 242 when a second factor
    is due (the tenant's or the application's MFA login policy), 404 for bad credentials, 409 a login-preventing
    action, 410 expired, 423 locked."""
    body = await read_json_object(request)
    application = _application(directory, _string(body, "applicationId"))
    authorization = request.headers.get("authorization")
    tenant_id = header_tenant(directory, request.headers.get(TENANT_HEADER))
    # An API key is required when an applicationId is sent, unless the application turned that off; without one the
    # tenant's loginConfiguration decides. A key that is sent anyway must be valid.
    if application is not None:
        key_required = application.login_requires_api_key
    else:
        key_required = directory.tenant_of(tenant_id).require_api_key_for_login
    api_key = (
        require_api_key(directory, authorization, "/api/login", "POST")
        if key_required
        else optional_api_key(directory, authorization, "/api/login", "POST")
    )
    login_id = _required(body, "loginId")
    password = _required(body, "password")
    scope = tenant_id or (application.tenant_id if application else None) or (api_key.tenant_id if api_key else None)
    user = directory.find_user(login_id, scope, body.get("loginIdTypes"))
    if user is None:
        raise NotFound()
    check_key_tenant(api_key, user.tenant_id)
    if not user.active:
        # FusionAuth answers 423 for a locked (deactivated) user before it looks at the password
        # (FusionAuth/fusionauth-issues#2524), so this status says that the account exists.
        raise Locked()
    if not user.check_password(password):
        login.record_failed_attempt(directory, user)
        raise NotFound()
    login.ensure_login_allowed(directory, user)
    login.ensure_not_expired(directory, user)
    tenant = directory.tenant_of(user.tenant_id)
    trust_id = request.cookies.get(_TRUST_COOKIE) or _string(body, "twoFactorTrustId")
    due = login.second_factor_due(directory, tenant, application, user, trust_id)
    if due is not None:
        challenge = two_factor.start(
            directory,
            user=user,
            application_id=None if application is None else application.id,
            origin="login",
        )
        payload: dict[str, Any] = {"twoFactorId": challenge.id}
        if due == "challenge":
            payload["methods"] = two_factor.methods_json(user)
        else:
            # Required, and nothing to challenge with: the user must enable a method with this twoFactorId first.
            payload["configurableMethods"] = login.configurable_methods(tenant)
        return JSONResponse(payload, status_code=242)
    result = login.complete_login(
        directory, user=user, application=application, no_jwt=bool(body.get("noJWT")), authentication_type="PASSWORD"
    )
    return _respond(result)


# -- JWT ----------------------------------------------------------------------------------------------------------


def _invalid_refresh_token() -> ValidationFailed:
    return ValidationFailed.field("refreshToken", "invalid", "The refresh token is expired, not found, or revoked.")


@router.post("/api/jwt/refresh")
async def refresh_jwt(request: Request, directory: DirectoryDep) -> Response:
    """Exchange a refresh token for a new access token (docs/fusionauth.md §7). Anonymous; 400 for a bad refresh
    token."""
    body = await read_json_object(request)
    value = request.cookies.get("refresh_token") or _string(body, "refreshToken")  # the cookie wins
    if value is None:
        raise ValidationFailed.field("refreshToken", "blank", "You must specify the refreshToken.")
    refresh = directory.live_refresh_token(value)
    if refresh is None or refresh.user_id not in directory.users:
        raise _invalid_refresh_token()
    user = directory.users[refresh.user_id]
    application = directory.applications.get(refresh.application_id or "")
    # Tokens from the Login API refresh only when the application enables JWT refresh (docs/fusionauth.md §7).
    if refresh.origin == "login" and (application is None or not application.login_allows_token_refresh):
        raise _invalid_refresh_token()
    login.ensure_login_allowed(directory, user)
    tenant = directory.tenant_of(refresh.tenant_id)
    if tokens.refresh_token_usage_policy(tenant, application) == "OneTimeUse":
        refresh = grants.rotate_refresh_token(directory, refresh)
    issued = tokens.issue_access_token(
        directory,
        Authentication.refreshed(directory, refresh),
        refresh_token_id=refresh.id,
        # A Login API token has no grant chain, so its refreshes carry no `gty` either.
        grant_types=(*refresh.grant_types, "refresh_token") if refresh.grant_types else (),
    )
    result = login.LoginResult(
        status=200,
        body={"token": issued.token, "refreshToken": refresh.token, "refreshTokenId": refresh.id},
        cookies=[
            login.Cookie("access_token", issued.token),
            login.Cookie("refresh_token", refresh.token, int(refresh.expires_at - directory.now())),
        ],
    )
    return _respond(result)


def _jwt_owner(directory: Directory, authorization: str | None) -> str | None:
    token = bearer_token(authorization)
    if token is None:
        return None
    claims = tokens.verify(directory, token)
    if claims is None:
        raise Unauthorized()
    return str(claims["sub"])


@router.delete("/api/jwt/refresh/{token_id}")
async def revoke_refresh_token_by_id(token_id: str, request: Request, directory: DirectoryDep) -> Response:
    """Revoke one refresh token (docs/fusionauth.md §7): an API key, or a JWT of the token's owner. 200 / 401 / 404."""
    authorization = request.headers.get("authorization")
    owner = _jwt_owner(directory, authorization)
    if owner is None:
        require_api_key(directory, authorization, "/api/jwt/refresh", "DELETE")
    refresh = directory.refresh_tokens.get(token_id)
    if refresh is None:
        raise NotFound()
    if owner is not None and refresh.user_id != owner:
        raise Unauthorized()
    grants.revoke_refresh_token(directory, refresh)
    return Response(status_code=200)


@router.delete("/api/jwt/refresh")
async def revoke_refresh_tokens(request: Request, directory: DirectoryDep) -> Response:
    """Revoke by ``token`` (API key or owner JWT), or all of a ``userId`` and/or ``applicationId`` (API key)."""
    authorization = request.headers.get("authorization")
    params = request.query_params
    value = params.get("token")
    if value is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        # The token may travel in a form body to keep it out of access logs (docs/fusionauth.md §7).
        tokens_in_body = parse_qs((await request.body()).decode()).get("token") or []
        value = tokens_in_body[0] if tokens_in_body else None
    if value is not None:
        owner = _jwt_owner(directory, authorization)
        if owner is None:
            require_api_key(directory, authorization, "/api/jwt/refresh", "DELETE")
        refresh = directory.live_refresh_token(value)
        if refresh is None:
            raise NotFound()
        if owner is not None and refresh.user_id != owner:
            raise Unauthorized()
        grants.revoke_refresh_token(directory, refresh)
        return Response(status_code=200)
    require_api_key(directory, authorization, "/api/jwt/refresh", "DELETE")
    user_id, application_id = params.get("userId"), params.get("applicationId")
    if user_id is None and application_id is None:
        raise ValidationFailed.general("[missing]", "Send token, userId or applicationId.")
    grants.revoke_refresh_tokens(directory, user_id=user_id, application_id=application_id)
    return Response(status_code=200)


def _application_signing_key(directory: Directory, application_id: str) -> SigningKey:
    """The key the application itself names for its access tokens; 404 for an unknown application, or one that
    signs with its tenant's keys: the docs say no key may be available for an application "configured to use the
    global JWT configuration" (Retrieve Public Keys API)."""
    application = directory.applications.get(application_id)
    if application is None or not application.jwt.get("enabled"):
        raise NotFound()
    key = directory.keys.get(str(application.jwt.get("accessTokenKeyId") or ""))
    if key is None:
        raise NotFound()
    return key


@router.get("/api/jwt/public-key")
async def retrieve_public_keys(request: Request, directory: DirectoryDep) -> Response:
    """FusionAuth's Retrieve Public Keys API (docs/fusionauth.md §7 lists it; the docs'
    ``apis/jwt/retrieve-public-keys``).

    Anonymous. ``?applicationId=`` answers the application's access-token key as ``publicKey``; ``?kid=`` (what the
    docs and the official clients send; the OpenAPI spec names it ``keyId``) the key with that kid; no parameter,
    every public key as ``publicKeys`` keyed by kid. 404 for an unknown application or kid. FusionAuth also answers
    404 for an HMAC key (it has no public half, docs/fusionauth.md §6.5); every dev server key is RSA (keys.py), so
    here every
    key has one and the listing holds the same keys as the JWKS.
    """
    params = request.query_params
    application_id = params.get("applicationId")
    kid = params.get("kid", params.get("keyId"))
    if application_id is not None:
        return JSONResponse({"publicKey": _application_signing_key(directory, application_id).public_pem()})
    if kid is not None:
        key = directory.key_by_kid(kid)
        if key is None:
            raise NotFound()
        return JSONResponse({"publicKey": key.public_pem()})
    return JSONResponse({"publicKeys": {key.kid: key.public_pem() for key in directory.keys.values()}})


@router.get("/api/jwt/validate")
async def validate_jwt(request: Request, directory: DirectoryDep) -> Response:
    """200 ``{"jwt": claims}`` for a valid access token (Bearer or ``access_token`` cookie), else 401."""
    token = bearer_token(request.headers.get("authorization")) or request.cookies.get("access_token")
    claims = tokens.verify(directory, token) if token else None
    if claims is None:
        raise Unauthorized()
    return JSONResponse({"jwt": claims})


# -- status -------------------------------------------------------------------------------------------------------


@router.get("/api/status")
async def status(directory: DirectoryDep) -> Response:
    # FusionAuth answers 200 with JSON when healthy (docker healthchecks poll it, docs/fusionauth.md §11).
    return JSONResponse({"status": "ok", "server": "fusionauth_dev", "note": "development server, not FusionAuth"})
