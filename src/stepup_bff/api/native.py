"""Native sign-in, the SPA's own form (auth/native_login.py): password, then a second factor if FusionAuth asks.

JSON routes, not navigations: their errors are JSON bodies (the redirect to `/?error=` is for GET /auth/* only), and
they pass the CSRF checks of every state-changing route. They answer 404 unless `login.native` is on.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..auth.native_login import SecondFactorDue
from ..deps import (
    ActivityDep,
    ClientAddress,
    MetricsDep,
    NativeSignInDep,
    OptionalSession,
    SessionsDep,
    counts_sign_in,
)
from ..errors import AppError
from ..web.cookies import queue_cookie
from .schemas import NativeLoginIn, NativeLoginOut, StepUpFinishIn, StepUpSendIn, StepUpSendOut, StepUpStartOut

router = APIRouter(prefix="/auth/native", tags=["auth"])


@router.post("/login", response_model_exclude_none=True)
async def login(
    request: Request,
    body: NativeLoginIn,
    native: NativeSignInDep,
    sessions: SessionsDep,
    previous: OptionalSession,
    ip: ClientAddress,
    metrics: MetricsDep,
    activity: ActivityDep,
) -> NativeLoginOut:
    """Check the password with FusionAuth. Signed in: the session, as GET /api/session describes it. A second
    factor due: `{"authenticated": false, "two_factor": {"methods", "expires_at"}}` and a pending-sign-in cookie."""
    try:
        outcome = await native.login(body.login_id, body.password, ip, previous)
    except AppError as exc:
        metrics.sign_in("native", exc.error_code)
        raise
    if isinstance(outcome, SecondFactorDue):
        metrics.sign_in("native", "second_factor_due")
        queue_cookie(request, outcome.cookie)
        return NativeLoginOut(authenticated=False, two_factor=StepUpStartOut.of(outcome.challenge))
    metrics.sign_in("native", "success")
    await activity.record(outcome.session.user.id, "sign_in", via="native")
    queue_cookie(request, sessions.set_cookie_header(outcome.session))
    return NativeLoginOut.of(outcome.session, outcome.session.step_up)


@router.post("/two-factor/send")
async def send(request: Request, body: StepUpSendIn, native: NativeSignInDep) -> StepUpSendOut:
    """Have FusionAuth email or text a code for the sign-in waiting for its second factor."""
    return StepUpSendOut.of(await native.send(request.cookies.get(native.cookie_name), body.method_id))


@router.post("/two-factor/finish", response_model_exclude_none=True, dependencies=[counts_sign_in("native")])
async def finish(
    request: Request,
    body: StepUpFinishIn,
    native: NativeSignInDep,
    sessions: SessionsDep,
    previous: OptionalSession,
    ip: ClientAddress,
    activity: ActivityDep,
) -> NativeLoginOut:
    """Check the code; on success the person is signed in, and stepped up."""
    session = await native.finish(request.cookies.get(native.cookie_name), body.code, ip, previous, body.method_id)
    method = session.step_up.method if session.step_up is not None else None
    await activity.record(session.user.id, "sign_in", via="native", **({"method": method} if method else {}))
    queue_cookie(request, native.clear_cookie_header())
    queue_cookie(request, sessions.set_cookie_header(session))
    return NativeLoginOut.of(session, session.step_up)
