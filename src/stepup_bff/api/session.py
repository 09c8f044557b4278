"""What the single-page app asks first: who is signed in, until when, and whether they are stepped up."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import OptionalSession, StepUpDep
from .schemas import SessionOut, StepUpStatus, UserOut, iso

router = APIRouter(prefix="/api", tags=["session"])


# None fields are left out, so the SPA sees {"authenticated": false} and "step_up": {"active": false}.
@router.get("/session", response_model_exclude_none=True)
async def read_session(session: OptionalSession, step_up: StepUpDep) -> SessionOut:
    if session is None:
        return SessionOut(authenticated=False)
    fresh = await step_up.status(session)
    if fresh is not None:
        step_up_status = StepUpStatus(active=True, expires_at=iso(fresh.until), method=fresh.method)
    else:
        step_up_status = StepUpStatus(active=False)
    return SessionOut(
        authenticated=True,
        user=UserOut(id=session.user.id, email=session.user.email, name=session.user.name),
        signed_in_at=iso(session.signed_in_at),
        expires_at=iso(session.expires_at),
        idle_expires_at=iso(session.idle_expires_at),
        step_up=step_up_status,
    )
