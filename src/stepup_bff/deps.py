"""FastAPI dependencies, as Annotated aliases. Guards chain so a route reads like a sentence:

CurrentSession -> OptionalSession -> Services
CurrentUser    -> CurrentSession

`NoBody` is declared on the route (`dependencies=[NoBody]`) of any route that takes no input.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from .auth.login_flow import LoginFlow
from .auth.native_login import NativeSignIn
from .auth.sessions import Session, SessionManager, User
from .clock import Clock
from .errors import InvalidRequest, LoginRequired, NotFound, on_invalid_input
from .fusionauth.client import FusionAuthClient
from .ops import request_context
from .ops.metrics import Metrics, SignInKind, StepUpOutcome, StepUpStep
from .ops.readiness import Readiness
from .services import Services
from .settings import Settings
from .stepup.service import StepUpService
from .web.cookies import queue_cookie


def get_services(request: Request) -> Services:
    services: Services = request.state.services  # put there by the lifespan
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


def get_clock(services: ServicesDep) -> Clock:
    return services.clock


def get_fusionauth(services: ServicesDep) -> FusionAuthClient:
    return services.fusionauth


def get_sessions(services: ServicesDep) -> SessionManager:
    return services.sessions


def get_login_flow(services: ServicesDep) -> LoginFlow:
    return services.login


def get_step_up(services: ServicesDep) -> StepUpService:
    return services.step_up


def get_native_sign_in(services: ServicesDep) -> NativeSignIn:
    if not services.settings.login.native:
        # Off (the default): the routes do not exist as far as anyone outside can tell.
        raise NotFound()
    return services.native


def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


def get_readiness(services: ServicesDep) -> Readiness:
    return services.readiness


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
FusionAuthDep = Annotated[FusionAuthClient, Depends(get_fusionauth)]
SessionsDep = Annotated[SessionManager, Depends(get_sessions)]
LoginFlowDep = Annotated[LoginFlow, Depends(get_login_flow)]
StepUpDep = Annotated[StepUpService, Depends(get_step_up)]
NativeSignInDep = Annotated[NativeSignIn, Depends(get_native_sign_in)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReadinessDep = Annotated[Readiness, Depends(get_readiness)]


def get_client_address(request: Request) -> str | None:
    # request.client is the browser's address when uvicorn trusts the proxy (server.forwarded_allow_ips), else the
    # peer's: X-Forwarded-For from anyone else is ignored, so nobody picks the address their guesses count against.
    return request.client.host if request.client else None


ClientAddress = Annotated[str | None, Depends(get_client_address)]


# RFC 8259: an empty object is `{` and `}` with only JSON whitespace around and between them.
_EMPTY_OBJECT = re.compile(rb"[ \t\n\r]*\{[ \t\n\r]*\}[ \t\n\r]*")


async def require_empty_body(request: Request) -> None:
    """For a route that takes no input: no body, or the empty JSON object (the SPA sends `{}`). Anything else
    (malformed JSON, an array, other keys, NaN, bytes that are not UTF-8) is a client we do not understand: 400
    invalid_request. Declared on the route, it runs before the route's other dependencies, so nothing was done.
    The edge (web/edge.py) has already read the body, checked its size and that it is JSON."""
    body = await request.body()
    if body and not _EMPTY_OBJECT.fullmatch(body):
        raise InvalidRequest("This request takes no input: send no body, or {}.")


NoBody = Depends(require_empty_body)  # @router.post("/path", dependencies=[NoBody])


async def get_optional_session(request: Request, sessions: SessionsDep) -> Session | None:
    cookie = request.cookies.get(sessions.cookie_name)
    session = await sessions.load(cookie)
    if session is not None:
        request_context.set_user(session.user.id)  # every later log line of this request names the user
    if cookie and session is None and await sessions.should_clear(cookie):
        # A cookie for a session that is over (signed out, expired, tampered): tell the browser to drop it.
        queue_cookie(request, sessions.clear_cookie_header())
    return session


OptionalSession = Annotated[Session | None, Depends(get_optional_session)]


def require_session(session: OptionalSession) -> Session:
    if session is None:
        raise LoginRequired()
    return session


CurrentSession = Annotated[Session, Depends(require_session)]


def get_current_user(session: CurrentSession) -> User:
    return session.user


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_step_up(max_age: int | None = None) -> Callable[..., Awaitable[Session]]:
    """A guard for any route: a second factor completed in the last `max_age` seconds (default
    `step_up.max_age`), else 401 insufficient_user_authentication (RFC 9470). For example:

        FreshSession = Annotated[Session, Depends(require_step_up(max_age=60))]
    """

    async def guard(request: Request, session: CurrentSession, step_up: StepUpDep, settings: SettingsDep) -> Session:
        restore = await step_up.authorize(session, max_age or settings.step_up.max_age)
        if restore is not None:
            on_invalid_input(request, restore)
        return session

    return guard


SteppedUpSession = Annotated[Session, Depends(require_step_up())]


def get_stepped_up_user(session: SteppedUpSession) -> User:
    return session.user


SteppedUpUser = Annotated[User, Depends(get_stepped_up_user)]


# -- counting outcomes: route dependencies, listed in the decorator's `dependencies=[...]` -------------------------


def counts_step_up(step: StepUpStep, success: StepUpOutcome) -> Any:
    """Count the route's step-up outcome: `success` when it answers, else the outcome of the error it raises
    (a dependency with yield sees the route's exception, so the route's body stays as it is)."""

    async def count(metrics: MetricsDep) -> AsyncIterator[None]:
        with metrics.step_up_outcome(step, success):
            yield

    return Depends(count)


def counts_sign_in(kind: SignInKind) -> Any:
    """Count the route's sign-in: "success", or the error code the browser is sent home with."""

    async def count(metrics: MetricsDep) -> AsyncIterator[None]:
        with metrics.sign_in_outcome(kind):
            yield

    return Depends(count)
