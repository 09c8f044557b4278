"""The step-up API the SPA drives after a 401 insufficient_user_authentication: start, send, finish, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from ..clock import iso
from ..deps import ClientAddress, CurrentSession, NoBody, SessionsDep, StepUpDep, counts_step_up, optional_body
from ..web.cookies import queue_cookie
from .schemas import (
    StepUpFinishIn,
    StepUpFinishOut,
    StepUpSendIn,
    StepUpSendOut,
    StepUpStartIn,
    StepUpStartOut,
    StepUpStatus,
    TransactionOut,
)

router = APIRouter(prefix="/api/step-up", tags=["step-up"])

# Read before the session is looked up: a body this route does not understand changes nothing.
StartBody = Annotated[StepUpStartIn, Depends(optional_body(StepUpStartIn))]


@router.post(
    "/start",
    response_model_exclude_none=True,
    dependencies=[counts_step_up("start", "started")],
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": StepUpStartIn.model_json_schema()}},
        }
    },
)
async def start(body: StartBody, session: CurrentSession, step_up: StepUpDep) -> StepUpStartOut:
    """Begin a challenge for the signed-in user; lists their methods with masked destinations. With the
    `transaction_id` of a 401's `transaction`, the challenge confirms that request, and only it."""
    started = await step_up.start(session, body.transaction_id)
    return StepUpStartOut.of(started.challenge, started.transaction)


@router.post("/send", dependencies=[counts_step_up("send", "sent")])
async def send(body: StepUpSendIn, session: CurrentSession, step_up: StepUpDep) -> StepUpSendOut:
    """Have FusionAuth send a code by email or SMS."""
    return StepUpSendOut.of(await step_up.send(session, body.method_id))


@router.post("/finish", response_model_exclude_none=True, dependencies=[counts_step_up("finish", "verified")])
async def finish(
    request: Request,
    body: StepUpFinishIn,
    session: CurrentSession,
    step_up: StepUpDep,
    sessions: SessionsDep,
    ip: ClientAddress,
) -> StepUpFinishOut:
    """Check the code; on success the session gets a new id and a short-lived stepped-up flag (for a bound step-up:
    a grant for the one request it confirmed)."""
    finished = await step_up.finish(session, body.code, ip, body.method_id)
    stepped_up = finished.session
    queue_cookie(request, sessions.set_cookie_header(stepped_up))
    assert stepped_up.step_up is not None  # noqa: S101 - finish() always returns a stepped-up session
    if finished.transaction is not None:
        return StepUpFinishOut(step_up=StepUpStatus(active=False), transaction=TransactionOut.of(finished.transaction))
    return StepUpFinishOut(
        step_up=StepUpStatus(active=True, expires_at=iso(stepped_up.step_up.until), method=stepped_up.step_up.method)
    )


@router.post("/cancel", status_code=204, dependencies=[NoBody])
async def cancel(session: CurrentSession, step_up: StepUpDep) -> Response:
    """Discard the challenge in progress."""
    await step_up.cancel(session)
    return Response(status_code=204)
