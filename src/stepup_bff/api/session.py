"""What the single-page app asks first: who is signed in, until when, and whether they are stepped up."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import OptionalSession, SettingsDep, StepUpDep
from .schemas import SessionOut

router = APIRouter(prefix="/api", tags=["session"])


# None fields are left out, so the SPA sees {"authenticated": false, "sign_in": [...]} and "step_up": {"active": false}.
@router.get("/session", response_model_exclude_none=True)
async def read_session(session: OptionalSession, step_up: StepUpDep, settings: SettingsDep) -> SessionOut:
    if session is None:
        return SessionOut(authenticated=False, sign_in=["native", "hosted"] if settings.login.native else ["hosted"])
    return SessionOut.of(session, await step_up.status(session))
