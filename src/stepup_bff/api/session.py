"""What the single-page app asks first: who is signed in, until when, and whether they are stepped up."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import OptionalSession, ServicesDep
from .schemas import SessionOut

router = APIRouter(prefix="/api", tags=["session"])


# None fields are left out, so the SPA sees {"authenticated": false, "sign_in": [...]} and "step_up": {"active": false}.
# The SPA asks this on every page: one ServicesDep rather than StepUpDep and SettingsDep, one dependency less to solve.
@router.get("/session", response_model_exclude_none=True)
async def read_session(session: OptionalSession, services: ServicesDep) -> SessionOut:
    if session is None:
        native = services.settings.login.native
        return SessionOut(authenticated=False, sign_in=["native", "hosted"] if native else ["hosted"])
    return SessionOut.of(session, await services.step_up.status(session))
