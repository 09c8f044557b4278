"""OAuth 2.0 / OpenID Connect endpoints (docs/fusionauth.md §6): discovery, JWKS, the hosted login page, token,
userinfo,
logout.

The hosted pages validate ``client_id`` and ``redirect_uri`` before anything else and show an error page when either
is wrong: the server never redirects to a URI it has not matched exactly against the application's
``authorizedRedirectURLs``. Any later problem is sent back to that validated URI as ``error``/``error_reason``/
``error_description``/``state``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from fusionauth_dev import grants, identifiers, login, pages, tokens, two_factor
from fusionauth_dev.access import bearer_token
from fusionauth_dev.authentication import Authentication
from fusionauth_dev.deps import DirectoryDep, SettingsDep
from fusionauth_dev.directory import (
    Application,
    AuthorizationCode,
    Directory,
    RefreshToken,
    SsoSession,
    Tenant,
    User,
)
from fusionauth_dev.errors import FusionAuthError, LoginPrevented, OAuthError

router = APIRouter()

# Standard scopes FusionAuth knows; anything else must be one of the application's custom scopes, or the request is
# rejected (unknownScopePolicy=Reject, the default since 1.50).
STANDARD_SCOPES = ("openid", "offline_access", "profile", "email", "phone", "address")
SSO_COOKIE = "fusionauth.sso"
_TRUST_COOKIE = "fusionauth.trust"
# The authorize parameters carried through the login form as hidden fields, as FusionAuth's hosted page does.
_CARRIED_PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "tenantId",
    "locale",
    "response_mode",
    "login_hint",
)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class PageError(Exception):
    """Shown as an HTML error page (400): nothing about the request can be trusted enough to redirect."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title
        self.message = message


@dataclass
class RedirectError(Exception):
    redirect_uri: str
    state: str | None
    error: str
    reason: str
    description: str


@dataclass(frozen=True)
class AuthorizeRequest:
    application: Application
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    prompt: str | None
    max_age: int | None
    login_hint: str | None
    carried: dict[str, str]


def _redirect_url(base: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def _redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=302, headers={"Cache-Control": "no-store"})


def parse_authorize(directory: Directory, params: Mapping[str, str]) -> AuthorizeRequest:
    client_id = params.get("client_id", "")
    application = directory.applications.get(client_id) if client_id else None
    if application is None or not application.data.get("active", True):
        raise PageError("Invalid request", "The client_id is missing or is not the id of an application.")
    redirect_uri = params.get("redirect_uri", "")
    if not redirect_uri or redirect_uri not in application.redirect_urls:
        raise PageError(
            "Invalid redirect_uri",
            "The redirect_uri is missing or is not one of this application's Authorized redirect URLs.",
        )
    state = params.get("state") or None

    def fail(error: str, reason: str, description: str) -> RedirectError:
        return RedirectError(redirect_uri, state, error, reason, description)

    response_type = params.get("response_type", "")
    if response_type != "code":
        # Only the authorization code grant is implemented (FusionAuth also has implicit and device flows).
        raise fail("unsupported_response_type", "invalid_response_type", "Only response_type=code is supported.")
    if "authorization_code" not in application.enabled_grants:
        raise fail("unauthorized_client", "grant_type_disabled", "The authorization_code grant is not enabled.")
    response_mode = params.get("response_mode") or "query"
    if response_mode != "query":
        raise fail("invalid_request", "invalid_response_mode", "The development server supports response_mode=query.")
    challenge = params.get("code_challenge") or None
    method = params.get("code_challenge_method") or None
    if challenge is None and application.pkce_policy == "Required":
        raise fail("invalid_request", "missing_code_challenge", "This application requires PKCE (code_challenge).")
    if challenge is not None and method != "S256":
        # FusionAuth documents S256 only (docs/fusionauth.md §6.1). A missing method means `plain` (RFC 7636 §4.3),
        # which the dev server
        # refuses so that a relying party that forgets the method finds out here rather than in production.
        raise fail("invalid_request", "invalid_code_challenge_method", "code_challenge_method must be S256.")
    scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
    allowed = set(STANDARD_SCOPES) | set(application.custom_scopes)
    unknown = [scope for scope in scopes if scope not in allowed]
    if unknown and application.unknown_scope_policy == "Reject":
        raise fail("invalid_scope", "unknown_scope", f"Unknown scope: {' '.join(unknown)}")
    scopes = tuple(scope for scope in scopes if scope in allowed)
    max_age_raw = params.get("max_age")
    try:
        max_age = int(max_age_raw) if max_age_raw else None
    except ValueError as exc:
        raise fail("invalid_request", "invalid_max_age", "max_age must be a number of seconds.") from exc
    carried = {name: params[name] for name in _CARRIED_PARAMS if params.get(name)}
    return AuthorizeRequest(
        application=application,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        nonce=params.get("nonce") or None,
        code_challenge=challenge,
        code_challenge_method="S256" if challenge else None,
        prompt=params.get("prompt") or None,
        max_age=max_age,
        login_hint=params.get("login_hint") or None,
        carried=carried,
    )


def _error_redirect(error: RedirectError) -> RedirectResponse:
    return _redirect(
        _redirect_url(
            error.redirect_uri,
            {
                "error": error.error,
                "error_description": error.description,
                "error_reason": error.reason,
                "state": error.state,
            },
        )
    )


def _page_error(error: PageError) -> Response:
    return pages.html_response(pages.error_page(error.title, error.message), status_code=400)


def _login_form(request: AuthorizeRequest, *, login_id: str = "", error: str | None = None) -> Response:
    html = pages.login_page(
        application_name=request.application.name,
        hidden=request.carried,
        login_id=login_id or request.login_hint or "",
        error=error,
    )
    return pages.html_response(html)


def _sign_in(
    directory: Directory,
    request: AuthorizeRequest,
    user: User,
    session: SsoSession | None,
) -> Response:
    """Finish the hosted login: SSO session, authorization code, 302 back to the relying party."""
    application = request.application
    registered = user.registration(application.id) is not None
    if not registered and application.require_registration:
        return _login_form(request, error="You are not registered for this application.")
    tenant = directory.tenant_of(user.tenant_id)
    if session is None:
        session = grants.start_sso_session(directory, user=user, tenant=tenant, authentication_type="PASSWORD")
    else:
        grants.touch_sso_session(directory, session)
    login.record_login(directory, user, application)
    code = AuthorizationCode(
        code=identifiers.opaque_token(),
        application_id=application.id,
        user_id=user.id,
        tenant_id=tenant.id,
        redirect_uri=request.redirect_uri,
        scopes=request.scopes,
        nonce=request.nonce,
        code_challenge=request.code_challenge,
        code_challenge_method=request.code_challenge_method,
        sso_session_id=session.id,
        auth_time=session.auth_time,
        authentication_type=session.authentication_type,
        expires_at=directory.now() + tenant.authorization_code_ttl,
    )
    directory.authorization_codes[code.code] = code
    location = _redirect_url(
        request.redirect_uri,
        {
            "code": code.code,
            "locale": request.carried.get("locale", "en"),
            "state": request.state,
            "userState": "Authenticated" if registered else "AuthenticatedNotRegistered",
        },
    )
    response = _redirect(location)
    response.set_cookie(SSO_COOKIE, session.id, httponly=True, samesite="lax", path="/")
    return response


# -- discovery ----------------------------------------------------------------------------------------------------


def _discovery(tenant: Tenant, base: str) -> dict[str, Any]:
    # Field set per docs/fusionauth.md §6.5; the lists advertise what this server implements (FusionAuth's also name the
    # implicit and device grants).
    return {
        "issuer": tenant.issuer,
        "authorization_endpoint": f"{base}/oauth2/authorize",
        "token_endpoint": f"{base}/oauth2/token",
        "userinfo_endpoint": f"{base}/oauth2/userinfo",
        "end_session_endpoint": f"{base}/oauth2/logout",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(STANDARD_SCOPES),
        "claims_supported": [
            "at_hash", "aud", "auth_time", "authenticationType", "email", "email_verified", "exp", "family_name",
            "given_name", "iat", "iss", "jti", "name", "nonce", "preferred_username", "roles", "scope", "sid", "sub",
            "tid",
        ],
        "frontchannel_logout_supported": True,
        "backchannel_logout_supported": False,
    }  # fmt: skip


@router.get("/.well-known/openid-configuration")
async def openid_configuration(request: Request, directory: DirectoryDep, settings: SettingsDep) -> Response:
    tenant = directory.tenant_of(request.query_params.get("tenantId"))
    return JSONResponse(_discovery(tenant, settings.base_url(request)))


@router.get("/{tenant_id}/.well-known/openid-configuration")
async def tenant_openid_configuration(
    tenant_id: str, request: Request, directory: DirectoryDep, settings: SettingsDep
) -> Response:
    tenant = directory.tenants.get(tenant_id)
    if tenant is None:
        return Response(status_code=404)
    return JSONResponse(_discovery(tenant, settings.base_url(request)))


@router.get("/.well-known/jwks.json")
async def jwks(directory: DirectoryDep) -> Response:
    # Every key here is RSA, so every key is published (HMAC keys never would be, docs/fusionauth.md §6.5).
    return JSONResponse({"keys": [key.jwk() for key in directory.keys.values()]})


# -- hosted login -------------------------------------------------------------------------------------------------


async def _read_form(request: Request) -> dict[str, str]:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        raise OAuthError("invalid_request", "invalid_content_type", "Send application/x-www-form-urlencoded.")
    pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 §3.1: request parameters must not be repeated.
            raise OAuthError("invalid_request", "duplicate_parameter", f"The parameter [{name}] is repeated.")
        form[name] = value
    return form


def _session_for(directory: Directory, request: Request, authorize: AuthorizeRequest) -> SsoSession | None:
    session = directory.live_sso_session(request.cookies.get(SSO_COOKIE))
    if (
        session is None
        or session.tenant_id != authorize.application.tenant_id
        or session.user_id not in directory.users
    ):
        return None
    if authorize.prompt == "login":
        return None
    if authorize.max_age is not None and directory.now() - session.auth_time > authorize.max_age:
        return None
    return session


@router.get("/oauth2/authorize")
async def authorize(request: Request, directory: DirectoryDep) -> Response:
    params = {name: request.query_params[name] for name in request.query_params}
    try:
        authorize_request = parse_authorize(directory, params)
    except PageError as exc:
        return _page_error(exc)
    except RedirectError as exc:
        return _error_redirect(exc)
    session = _session_for(directory, request, authorize_request)
    if session is not None:
        user = directory.users[session.user_id]
        try:
            login.ensure_login_allowed(directory, user)
        except LoginPrevented:
            session = None
        else:
            return _sign_in(directory, authorize_request, user, session)
    if authorize_request.prompt == "none":
        return _error_redirect(
            RedirectError(
                authorize_request.redirect_uri,
                authorize_request.state,
                "login_required",
                "login_required",
                "The user is not signed in and prompt=none was requested.",
            )
        )
    return _login_form(authorize_request)


def _message_choices(user: User) -> list[pages.MethodChoice]:
    choices = []
    for method in user.methods:
        kind = str(method.get("method"))
        where = method.get("email") or method.get("mobilePhone") or method.get("name") or "authenticator app"
        choices.append(
            pages.MethodChoice(id=str(method["id"]), label=f"{kind}: {where}", can_send=kind != "authenticator")
        )
    return choices


@router.post("/oauth2/authorize")
async def authorize_submit(request: Request, directory: DirectoryDep) -> Response:
    try:
        form = await _read_form(request)
        authorize_request = parse_authorize(directory, form)
    except PageError as exc:
        return _page_error(exc)
    except RedirectError as exc:
        return _error_redirect(exc)
    except OAuthError as exc:
        return _page_error(PageError("Invalid request", exc.description))
    login_id = form.get("loginId", "").strip()
    password = form.get("password", "")
    tenant = directory.tenants[authorize_request.application.tenant_id]
    user = directory.find_user(login_id, tenant.id) if login_id else None
    if user is None or not password or not user.check_password(password):
        if user is not None:
            login.record_failed_attempt(directory, user)
        return _login_form(authorize_request, login_id=login_id, error="Invalid login credentials.")
    try:
        if not user.active:
            raise LoginPrevented([])
        login.ensure_login_allowed(directory, user)
    except LoginPrevented:
        return _login_form(authorize_request, login_id=login_id, error="Your account has been locked.")
    due = login.second_factor_due(
        directory, tenant, authorize_request.application, user, request.cookies.get(_TRUST_COOKIE)
    )
    if due == "configure":
        # FusionAuth's own page would walk them through setting up a method; the dev server's page cannot.
        return _login_form(
            authorize_request,
            login_id=login_id,
            error="This account must set up a second factor first, which the development server cannot do.",
        )
    if due == "challenge":
        challenge = two_factor.start(
            directory,
            user=user,
            application_id=authorize_request.application.id,
            origin="oauth",
            context={"authorize": authorize_request.carried},
        )
        notice = None
        if not any(m.get("method") == "authenticator" for m in user.methods):
            # With only message methods there is nothing to type yet: send to the first one straight away.
            first = user.methods[0]
            two_factor.send(directory, challenge, str(first["id"]))
            notice = f"A code was sent to {first.get('email') or first.get('mobilePhone')}."
        html = pages.two_factor_page(two_factor_id=challenge.id, methods=_message_choices(user), notice=notice)
        return pages.html_response(html)
    return _sign_in(directory, authorize_request, user, None)


def _oauth_challenge(directory: Directory, form: Mapping[str, str]) -> tuple[Any, AuthorizeRequest]:
    challenge = directory.live_challenge(form.get("twoFactorId", ""))
    if challenge is None or challenge.origin != "oauth" or challenge.user_id not in directory.users:
        raise PageError("Sign-in expired", "This sign-in has expired. Start again from the application.")
    try:
        return challenge, parse_authorize(directory, challenge.context["authorize"])
    except RedirectError as exc:
        raise PageError("Invalid request", exc.description) from exc


@router.post("/oauth2/two-factor")
async def two_factor_submit(request: Request, directory: DirectoryDep) -> Response:
    try:
        form = await _read_form(request)
        challenge, authorize_request = _oauth_challenge(directory, form)
    except PageError as exc:
        return _page_error(exc)
    except OAuthError as exc:
        return _page_error(PageError("Invalid request", exc.description))
    user = directory.users[challenge.user_id]
    matched, method_id = two_factor.match_code(directory, challenge, user, form.get("code", ""))
    if not matched:
        login.record_failed_attempt(directory, user)
        html = pages.two_factor_page(
            two_factor_id=challenge.id, methods=_message_choices(user), error="Invalid verification code."
        )
        return pages.html_response(html)
    del directory.challenges[challenge.id]
    two_factor.mark_last_used(user, method_id)
    login.clear_failed_attempts(directory, user)
    return _sign_in(directory, authorize_request, user, None)


@router.post("/oauth2/two-factor/send")
async def two_factor_send(request: Request, directory: DirectoryDep) -> Response:
    try:
        form = await _read_form(request)
        challenge, _ = _oauth_challenge(directory, form)
        user = directory.users[challenge.user_id]
        two_factor.send(directory, challenge, form.get("methodId", ""))
    except PageError as exc:
        return _page_error(exc)
    except FusionAuthError:
        return _page_error(PageError("Invalid request", "That method cannot receive a code."))
    method = user.method(form.get("methodId", "")) or {}
    notice = f"A code was sent to {method.get('email') or method.get('mobilePhone')}."
    html = pages.two_factor_page(two_factor_id=challenge.id, methods=_message_choices(user), notice=notice)
    return pages.html_response(html)


# -- token --------------------------------------------------------------------------------------------------------


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise OAuthError(
            "invalid_client", "invalid_client_authentication", "Malformed Basic credentials.", 401
        ) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "invalid_client_authentication", "Malformed Basic credentials.", 401)
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote_plus(client_id), unquote_plus(secret)


def _authenticate_client(directory: Directory, request: Request, form: Mapping[str, str]) -> tuple[Application, bool]:
    """(application, whether a secret was presented and verified). A presented secret is always checked."""
    basic = _basic_credentials(request.headers.get("authorization"))
    form_id = form.get("client_id") or None
    if basic is not None and form_id is not None and form_id != basic[0]:
        raise OAuthError("invalid_request", "invalid_client_id", "client_id does not match the Basic credentials.")
    client_id = basic[0] if basic is not None else form_id
    if client_id is None:
        raise OAuthError("invalid_client", "client_authentication_missing", "Client authentication is required.", 401)
    application = directory.applications.get(client_id)
    if application is None:
        raise OAuthError("invalid_client", "invalid_client_id", "The client could not be verified.", 401)
    secret = basic[1] if basic is not None else (form.get("client_secret") or None)
    if secret is None:
        return application, False
    if not application.client_secret or not hmac.compare_digest(secret.encode(), application.client_secret.encode()):
        raise OAuthError("invalid_client", "invalid_client_authentication", "The client could not be verified.", 401)
    return application, True


def _client_authentication_missing() -> OAuthError:
    return OAuthError(
        "invalid_client", "client_authentication_missing", "This application requires client authentication.", 401
    )


def _pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return hmac.compare_digest(computed, challenge)


def _required_parameter(form: Mapping[str, str], name: str) -> str:
    value = form.get(name)
    if not value:
        raise OAuthError("invalid_request", f"missing_{name}", f"The {name} parameter is required.")
    return value


def _ensure_login_allowed(directory: Directory, user: User) -> None:
    # A user action that makes the Login API answer 409 (docs/fusionauth.md §5) stops the token endpoint too.
    try:
        login.ensure_login_allowed(directory, user)
    except LoginPrevented as exc:
        raise OAuthError("invalid_grant", "login_prevented", "The user is prevented from logging in.") from exc


def _token_response(
    directory: Directory,
    authentication: Authentication,
    refresh: RefreshToken | None,
    *,
    return_refresh: bool,
    grant_types: tuple[str, ...],
    nonce: str | None,
    sso_session_id: str | None,
) -> JSONResponse:
    """The token endpoint's 200: an access token tied to ``refresh`` (``sid``), ``refresh`` itself when
    ``return_refresh``, and an id token for the openid scope (docs/fusionauth.md §6.2)."""
    issued = tokens.issue_access_token(
        directory, authentication, refresh_token_id=None if refresh is None else refresh.id, grant_types=grant_types
    )
    body: dict[str, Any] = {"access_token": issued.token, "expires_in": issued.expires_in}
    if refresh is not None and return_refresh:
        body["refresh_token"] = refresh.token
        body["refresh_token_id"] = refresh.id
    if "openid" in authentication.scopes:
        body["id_token"] = tokens.issue_id_token(
            directory, authentication, nonce=nonce, sso_session_id=sso_session_id, access_token=issued.token
        )
    body.update({"scope": " ".join(authentication.scopes), "token_type": "Bearer", "userId": authentication.user.id})
    return JSONResponse(body, headers=_NO_STORE)


def _authorization_code_grant(
    directory: Directory, application: Application, authenticated: bool, form: Mapping[str, str]
) -> JSONResponse:
    value = _required_parameter(form, "code")
    verifier = form.get("code_verifier") or None
    policy = application.client_authentication_policy
    if not authenticated and (policy == "Required" or (policy == "NotRequiredWhenUsingPKCE" and verifier is None)):
        raise _client_authentication_missing()
    # Codes are single-use: the first redemption attempt by the right client spends it, whatever happens next.
    code = directory.authorization_codes.get(value)
    if code is None or code.application_id != application.id:
        raise OAuthError(
            "invalid_grant", "auth_code_not_found", "The authorization code is invalid or was already used."
        )
    del directory.authorization_codes[value]
    if code.expires_at <= directory.now():
        raise OAuthError("invalid_grant", "auth_code_not_found", "The authorization code has expired.")
    if form.get("redirect_uri") != code.redirect_uri:
        # [inferred] FusionAuth's error for this; RFC 6749 §4.1.3 requires the exact value used at authorize.
        raise OAuthError(
            "invalid_request", "invalid_redirect_uri", "redirect_uri does not match the authorize request."
        )
    if code.code_challenge is not None:
        # Regardless of policy, a code_challenge sent to authorize makes code_verifier required (docs/fusionauth.md
        # §6.2).
        if verifier is None:
            raise OAuthError("invalid_grant", "missing_code_verifier", "code_verifier is required.")
        if not _pkce_matches(verifier, code.code_challenge):
            raise OAuthError("invalid_grant", "invalid_pkce_code_verifier", "The code_verifier does not match.")
    elif application.pkce_policy == "NotRequiredWhenUsingClientAuthentication" and not authenticated:
        raise OAuthError("invalid_request", "missing_code_verifier", "PKCE or client authentication is required.")
    user = directory.users.get(code.user_id)
    if user is None:
        raise OAuthError("invalid_grant", "auth_code_not_found", "The user no longer exists.")
    _ensure_login_allowed(directory, user)
    authentication = Authentication(
        user=user,
        tenant=directory.tenant_of(code.tenant_id),
        application=application,
        scopes=code.scopes,
        auth_time=code.auth_time,
        authentication_type=code.authentication_type,
    )
    grant_types = ("authorization_code",)
    refresh: RefreshToken | None = None
    if (
        "offline_access" in code.scopes
        and application.oauth_generates_refresh_tokens
        and "refresh_token" in application.enabled_grants
    ):
        refresh = grants.issue_refresh_token(
            directory,
            authentication,
            origin="oauth",
            used_pkce=code.code_challenge is not None,
            sso_session_id=code.sso_session_id,
            grant_types=grant_types,
        )
    return _token_response(
        directory,
        authentication,
        refresh,
        return_refresh=True,
        grant_types=grant_types,
        nonce=code.nonce,
        sso_session_id=code.sso_session_id,
    )


def _refresh_token_grant(
    directory: Directory, application: Application, authenticated: bool, form: Mapping[str, str]
) -> JSONResponse:
    value = _required_parameter(form, "refresh_token")
    refresh = directory.live_refresh_token(value)
    if refresh is None or refresh.application_id != application.id or refresh.user_id not in directory.users:
        raise OAuthError(
            "invalid_grant", "refresh_token_not_found", "The refresh token is invalid, expired or revoked."
        )
    policy = application.client_authentication_policy
    # [inferred] The refresh grant follows Required/NotRequired (docs/fusionauth.md §6.2); NotRequiredWhenUsingPKCE
    # lets a token
    # first obtained with PKCE refresh without the secret.
    if not authenticated and (policy == "Required" or (policy == "NotRequiredWhenUsingPKCE" and not refresh.used_pkce)):
        raise _client_authentication_missing()
    scopes = refresh.scopes
    if form.get("scope"):
        requested = tuple(dict.fromkeys(form["scope"].split()))
        if any(scope not in refresh.scopes for scope in requested):
            raise OAuthError("invalid_scope", "invalid_scope", "The scope must be a subset of the original scope.")
        scopes = requested
    _ensure_login_allowed(directory, directory.users[refresh.user_id])
    # A new refresh token comes back only with the OneTimeUse policy (docs/fusionauth.md §6.2).
    rotate = tokens.refresh_token_usage_policy(directory.tenant_of(refresh.tenant_id), application) == "OneTimeUse"
    if rotate:
        refresh = grants.rotate_refresh_token(directory, refresh)
    return _token_response(
        directory,
        Authentication.refreshed(directory, refresh, scopes),
        refresh,
        return_refresh=rotate,
        grant_types=(*refresh.grant_types, "refresh_token"),
        nonce=None,
        sso_session_id=refresh.sso_session_id,
    )


@router.post("/oauth2/token")
async def token(request: Request, directory: DirectoryDep) -> Response:
    form = await _read_form(request)
    grant_type = _required_parameter(form, "grant_type")
    application, authenticated = _authenticate_client(directory, request, form)
    if grant_type not in ("authorization_code", "refresh_token"):
        raise OAuthError(
            "unsupported_grant_type", "invalid_grant_type", f"The grant_type [{grant_type}] is not supported."
        )
    if grant_type not in application.enabled_grants:
        raise OAuthError("unauthorized_client", "grant_type_disabled", f"The {grant_type} grant is not enabled.")
    if grant_type == "authorization_code":
        return _authorization_code_grant(directory, application, authenticated, form)
    return _refresh_token_grant(directory, application, authenticated, form)


# -- userinfo and logout ------------------------------------------------------------------------------------------


def _invalid_token() -> OAuthError:
    return OAuthError("invalid_token", "invalid_token", "The access token is missing, invalid or expired.", 401)


@router.api_route("/oauth2/userinfo", methods=["GET", "POST"])
async def userinfo(request: Request, directory: DirectoryDep) -> Response:
    value = bearer_token(request.headers.get("authorization"))
    claims = tokens.verify(directory, value) if value else None
    # scopeHandlingPolicy=Strict (the default): the access token must carry the openid scope (docs/fusionauth.md §6.4).
    if claims is None or "openid" not in str(claims.get("scope", "")).split():
        raise _invalid_token()
    user = directory.users.get(str(claims["sub"]))
    if user is None:
        raise _invalid_token()
    return JSONResponse(tokens.userinfo_claims(user, claims))


def _logout_application(directory: Directory, params: Mapping[str, str]) -> Application | None:
    client_id = params.get("client_id")
    if not client_id and params.get("id_token_hint"):
        # Used only without client_id; an expired id token is still a good hint (docs/fusionauth.md §6.3).
        client_id = tokens.audience_hint(directory, params["id_token_hint"])
    return directory.applications.get(client_id) if client_id else None


@router.api_route("/oauth2/logout", methods=["GET", "POST"])
async def logout(request: Request, directory: DirectoryDep) -> Response:
    """End the SSO session (only that: refresh tokens stay valid) and redirect (docs/fusionauth.md §6.3)."""
    params: dict[str, str] = {name: request.query_params[name] for name in request.query_params}
    if request.method == "POST":
        params.update(await _read_form(request))
    application = _logout_application(directory, params)
    session_id = request.cookies.get(SSO_COOKIE)
    if session_id:
        directory.sso_sessions.pop(session_id, None)
    wanted = params.get("post_logout_redirect_uri")
    # Precedence: an authorized post_logout_redirect_uri, the application's logoutURL, the tenant's, then "/".
    if application is not None and wanted and wanted in application.redirect_urls:
        target = wanted
    elif application is not None and application.logout_url:
        target = application.logout_url
    else:
        tenant = directory.tenant_of(application.tenant_id if application else params.get("tenantId"))
        target = tenant.logout_url or "/"
    if params.get("state"):
        target = _redirect_url(target, {"state": params["state"]})
    response = _redirect(target)
    response.delete_cookie(SSO_COOKIE, path="/")
    return response
