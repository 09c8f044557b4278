"""The second factors a person manages (stepup/factors.py): list them, add an authenticator app, remove one."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ..auth.sessions import Session, SessionManager
from ..deps import (
    CurrentSession,
    FactorAdder,
    FactorId,
    FactorRemover,
    FactorsDep,
    NoBody,
    SessionsDep,
    SettingsDep,
    UserFactors,
    factor_named,
)
from ..web.cookies import queue_cookie
from .schemas import (
    AddedFactorOut,
    AuthenticatorConfirmIn,
    AuthenticatorConfirmOut,
    AuthenticatorStartOut,
    EnrolmentOptionsOut,
    FactorListOut,
    FactorOut,
    FactorRemovedOut,
    FactorRemoveIn,
)

router = APIRouter(prefix="/api/factors", tags=["factors"])


def renew(request: Request, sessions: SessionManager, session: Session | None) -> None:
    """The cookie of the session after a change of factors (a new id), or none when it ended meanwhile."""
    header = sessions.set_cookie_header(session) if session is not None else sessions.clear_cookie_header()
    queue_cookie(request, header)


# What can be added here. Email and SMS need a code FusionAuth sends for the purpose, and a paid plan.
ENROLLABLE = ["authenticator"]


@router.get("")
async def list_factors(
    session: CurrentSession, factors: UserFactors, service: FactorsDep, settings: SettingsDep
) -> FactorListOut:
    """The signed-in person's second factors, and what adding one takes right now."""
    return FactorListOut(
        factors=[FactorOut.of(factor) for factor in factors],
        enrolment=EnrolmentOptionsOut(
            methods=ENROLLABLE,
            reauthentication_required=not service.signed_in_recently(session),
            max_auth_age=service.max_auth_age,
            step_up_required=bool(factors),
            reauthenticate=["native", "hosted"] if settings.login.native else ["hosted"],
        ),
    )


@router.post("/authenticator/start", dependencies=[NoBody])
async def start_authenticator(session: FactorAdder, service: FactorsDep) -> AuthenticatorStartOut:
    """A new secret for an authenticator app, and its QR code: answered once. Needs a recent sign-in (else 401
    reauthentication_required with max_age) and, for someone who has a factor, a step-up confirming it (add_factor)."""
    return AuthenticatorStartOut.of(await service.start_authenticator(session))


@router.post("/authenticator/confirm", status_code=201, response_model_exclude_none=True)
async def confirm_authenticator(
    request: Request,
    body: AuthenticatorConfirmIn,
    session: CurrentSession,
    service: FactorsDep,
    sessions: SessionsDep,
) -> AuthenticatorConfirmOut:
    """Add the started authenticator with a current code of it (400 invalid_code + attempts_remaining). The first
    factor's recovery codes come back this once. The session gets a new id without its step-up; the person's other
    sessions end."""
    added = await service.confirm_authenticator(session, body.code, body.name)
    renew(request, sessions, added.session)
    return AuthenticatorConfirmOut(
        added=AddedFactorOut(method="authenticator", name=body.name),
        recovery_codes=[code.get_secret_value() for code in added.recovery_codes] or None,
    )


@router.post("/authenticator/cancel", status_code=204, dependencies=[NoBody])
async def cancel_authenticator(session: CurrentSession, service: FactorsDep) -> Response:
    """Discard the started enrolment and its secret."""
    await service.cancel(session)
    return Response(status_code=204)


@router.delete("/{factor_id}")
async def remove_factor(
    request: Request,
    factor_id: FactorId,
    body: FactorRemoveIn,
    session: FactorRemover,
    factors: UserFactors,
    service: FactorsDep,
    sessions: SessionsDep,
) -> FactorRemovedOut:
    """Remove a factor with a current code of it, or every factor with a recovery code. Needs a step-up confirming
    this removal (remove_factor): else 401 with the challenge and its transaction. The session gets a new id without
    its step-up; the person's other sessions end."""
    removed = await service.remove(session, factor_named(factors, factor_id), body.code, factors)
    renew(request, sessions, removed.session)
    return FactorRemovedOut(
        removed=[FactorOut.of(factor) for factor in removed.removed],
        factors=[FactorOut.of(factor) for factor in removed.remaining],
    )
