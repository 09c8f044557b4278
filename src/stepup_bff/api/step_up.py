"""The step-up API the SPA drives after a 401 insufficient_user_authentication: start, send, finish, cancel."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..deps import ClientAddress, CurrentSession, NoBody, SessionsDep, StepUpDep, counts_step_up
from ..web.cookies import queue_cookie
from .schemas import (
    StepUpFinishIn,
    StepUpFinishOut,
    StepUpSendIn,
    StepUpSendOut,
    StepUpStartOut,
    StepUpStatus,
    iso,
)

router = APIRouter(prefix="/api/step-up", tags=["step-up"])


@router.post("/start", dependencies=[NoBody, counts_step_up("start", "started")])
async def start(session: CurrentSession, step_up: StepUpDep) -> StepUpStartOut:
    """Begin a challenge for the signed-in user; lists their methods with masked destinations."""
    return StepUpStartOut.of(await step_up.start(session))


@router.post("/send", dependencies=[counts_step_up("send", "sent")])
async def send(body: StepUpSendIn, session: CurrentSession, step_up: StepUpDep) -> StepUpSendOut:
    """Have FusionAuth send a code by email or SMS."""
    return StepUpSendOut.of(await step_up.send(session, body.method_id))


@router.post("/finish", dependencies=[counts_step_up("finish", "verified")])
async def finish(
    request: Request,
    body: StepUpFinishIn,
    session: CurrentSession,
    step_up: StepUpDep,
    sessions: SessionsDep,
    ip: ClientAddress,
) -> StepUpFinishOut:
    """Check the code; on success the session gets a new id and a short-lived stepped-up flag."""
    stepped_up = await step_up.finish(session, body.code, ip, body.method_id)
    queue_cookie(request, sessions.set_cookie_header(stepped_up))
    assert stepped_up.step_up is not None  # noqa: S101 - finish() always returns a stepped-up session
    return StepUpFinishOut(
        step_up=StepUpStatus(active=True, expires_at=iso(stepped_up.step_up.until), method=stepped_up.step_up.method)
    )


@router.post("/cancel", status_code=204, dependencies=[NoBody])
async def cancel(session: CurrentSession, step_up: StepUpDep) -> Response:
    """Discard the challenge in progress."""
    await step_up.cancel(session)
    return Response(status_code=204)
