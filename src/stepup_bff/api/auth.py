"""Browser navigations for sign-in (GET /auth/login, /auth/callback) and the sign-out call (POST /auth/logout).

Failures of the navigations redirect to `/?error=<code>` (the error handler does that for GET /auth/*), never JSON,
and never leave a session behind.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse

from ..auth.sessions import Tokens, User
from ..auth.tokens import InvalidToken
from ..deps import (
    FusionAuthDep,
    LoginFlowDep,
    MetricsDep,
    NoBody,
    OptionalSession,
    ServicesDep,
    SessionsDep,
    SettingsDep,
    counts_sign_in,
)
from ..errors import LoginFailed, StoreUnavailable
from ..fusionauth.client import TokenExchangeRejected
from ..web.cookies import queue_cookie
from .schemas import LogoutOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/auth", tags=["auth"])

_LOGGABLE = re.compile(r"[^A-Za-z0-9_.-]")


@router.get("/login", response_class=RedirectResponse, status_code=302)
async def login(
    request: Request,
    flow: LoginFlowDep,
    fusionauth: FusionAuthDep,
    return_to: str | None = None,
    prompt: Literal["login"] | None = None,
    max_age: Annotated[int | None, Query(ge=0, le=86400)] = None,
) -> RedirectResponse:
    """Start a sign-in on FusionAuth's hosted page (authorization code + PKCE S256, state, nonce). `prompt=login` and
    `max_age` (seconds) ask FusionAuth to have the person type their password again, which adding a second factor
    needs. They are a request, not a proof: whoever builds the URL can leave them out, so what counts is the ID
    token's auth_time, which the callback keeps in the session (docs/fusionauth.md §6.1)."""
    pending, cookie_headers = flow.begin(return_to, request.cookies)
    url = await fusionauth.authorize_url(flow.authorize_params(pending, prompt=prompt, max_age=max_age))
    for header in cookie_headers:
        queue_cookie(request, header)
    return RedirectResponse(url, status_code=302)


@router.get("/callback", response_class=RedirectResponse, status_code=303, dependencies=[counts_sign_in("hosted")])
async def callback(
    request: Request,
    services: ServicesDep,
    previous: OptionalSession,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> RedirectResponse:
    """FusionAuth sends the browser back here; on success a session starts and the browser goes to return_to.

    A parameter given twice (`code=a&code=b`) never gets here: the edge refuses it (RFC 6749 section 3.1), before
    anything is read or consumed, so the pending sign-in it names is left as it was."""
    if state:
        # Whatever happens next, this sign-in's cookie has done its job.
        queue_cookie(request, services.login.clear_header(state))
    if error:
        # Anyone can send this parameter: log a code-shaped version only, so no newline can forge a log line.
        logger.warning("sign-in failed at FusionAuth: error=%s", _LOGGABLE.sub("?", error[:64]))
        raise LoginFailed("access_denied" if error == "access_denied" else "login_failed")
    if not code or not state:
        raise LoginFailed("invalid_request", "The sign-in answer is incomplete.")
    pending = await services.login.complete(state, request.cookies)
    try:
        tokens = await services.fusionauth.exchange_code(
            code=code, code_verifier=pending.code_verifier, redirect_uri=services.settings.callback_url
        )
    except TokenExchangeRejected as exc:
        logger.warning("sign-in failed: %s", exc)
        raise LoginFailed("token_exchange_failed", "FusionAuth did not accept the sign-in.") from exc
    try:
        claims = await services.tokens.verify_login(
            id_token=tokens.id_token, access_token=tokens.access_token, nonce=pending.nonce
        )
    except InvalidToken as exc:
        logger.warning("sign-in failed: token rejected: %s", exc)
        raise LoginFailed("invalid_token", "The sign-in could not be verified.") from exc
    user = User(id=claims.sub, email=claims.email, name=claims.display_name)
    try:
        if previous is not None:
            # A new sign-in replaces whatever session this browser had (ASVS 7.2.4: new id on authentication).
            await services.sessions.end(previous, reason="replaced")
        session = await services.sessions.create(
            user,
            Tokens(tokens.access_token, tokens.refresh_token, tokens.refresh_token_id),
            auth_time=claims.auth_time,
        )
    except StoreUnavailable:
        # No record holds the refresh token, so no session end will ever revoke it: do it now, or it stays live at
        # FusionAuth, held by nobody.
        await services.fusionauth.revoke_refresh_token_quietly(tokens.refresh_token_id)
        raise
    queue_cookie(request, services.sessions.set_cookie_header(session))
    logger.info("signed in: user=%s", user.id)
    await services.activity.record(user.id, "sign_in", via="hosted")
    return RedirectResponse(pending.return_to, status_code=303)


@router.post("/logout", dependencies=[NoBody])
async def logout(
    request: Request,
    session: OptionalSession,
    sessions: SessionsDep,
    fusionauth: FusionAuthDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> LogoutOut:
    """End the local session, revoke the refresh token, and hand back FusionAuth's logout URL to navigate to."""
    if session is not None:
        await sessions.end(session, reason="sign_out")
        metrics.signed_out("hosted")
        logger.info("signed out: user=%s", session.user.id)
    queue_cookie(request, sessions.clear_cookie_header())
    return LogoutOut(redirect=fusionauth.logout_url(f"{settings.public_url}/"))
