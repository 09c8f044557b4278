"""The signed-in person's own sessions: the list, ending one, and "sign out everywhere".

The ids are the sessions' list ids (auth/sessions.py): random, never a cookie's session id, and looked up only in
this person's own index, so another person's id finds nothing (404). These are state-changing API calls like any
other: the edge's CSRF rules apply (X-CSRF, Sec-Fetch-Site, Origin).
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from ..deps import CurrentSession, FusionAuthDep, MetricsDep, NoBody, SessionsDep, SettingsDep
from ..errors import FusionAuthError, NotFound
from ..web.cookies import queue_cookie
from .schemas import SessionListOut, SessionSummaryOut, SignedOutEverywhereOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

SessionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@router.get("")
async def list_sessions(session: CurrentSession, sessions: SessionsDep) -> SessionListOut:
    """This person's sessions, this one first (`current: true`), then the newest."""
    return SessionListOut(sessions=[SessionSummaryOut.of(s) for s in await sessions.list_sessions(session)])


@router.delete("/{session_id}", status_code=204, dependencies=[NoBody])
async def end_session(
    request: Request, session_id: SessionId, session: CurrentSession, sessions: SessionsDep, metrics: MetricsDep
) -> Response:
    """End one of this person's sessions (this one too, which is then a sign-out)."""
    listed = await sessions.list_sessions(session)
    target = next((s for s in listed if s.id == session_id), None)
    if target is None or not await sessions.end_listed(
        session, session_id, reason="sign_out" if target.current else "signed_out_elsewhere"
    ):
        raise NotFound("No such session of yours (it may have ended already).")
    logger.info("session ended from the session list: user=%s current=%s", session.user.id, target.current)
    if target.current:
        metrics.signed_out("hosted")
        queue_cookie(request, sessions.clear_cookie_header())
    return Response(status_code=204)


@router.delete("", dependencies=[NoBody])
async def sign_out_everywhere(
    request: Request,
    session: CurrentSession,
    sessions: SessionsDep,
    fusionauth: FusionAuthDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> SignedOutEverywhereOut:
    """End every session of this person, this one included, and revoke all their refresh tokens for this application
    at FusionAuth (those no session of ours holds, too)."""
    others = await sessions.end_user_sessions(session.user.id, reason="signed_out_elsewhere", keep=session)
    await sessions.end(session, reason="sign_out")
    metrics.signed_out("hosted")
    queue_cookie(request, sessions.clear_cookie_header())
    try:
        await fusionauth.revoke_user_refresh_tokens(session.user.id)
        revoked = True
    except FusionAuthError as exc:
        # The sessions are over here, which is what protects this person; each one's own refresh token was revoked
        # by its end (or will be refused at FusionAuth's next outage-free call). Say so rather than fail.
        logger.warning("sign out everywhere: FusionAuth did not revoke the refresh tokens: %s", exc.error_code)
        revoked = False
    logger.info("signed out everywhere: user=%s sessions=%d", session.user.id, others + 1)
    return SignedOutEverywhereOut(
        ended=others + 1, refresh_tokens_revoked=revoked, redirect=fusionauth.logout_url(f"{settings.public_url}/")
    )
