"""FastAPI dependencies, as Annotated aliases. Guards chain so a route reads like a sentence:

CurrentSession -> OptionalSession -> Services
CurrentUser    -> CurrentSession
SteppedUpUser  -> SteppedUpSession -> CurrentSession            (a fresh second factor, today's defaults)
TelegramSender -> require_privileged_action(action="send_telegram", ...)   (bound to the telegram; its activity
                  event is written in the telegram's own transaction)
FactorAdder    -> require_step_up(action="add_factor", ...)      (a recent sign-in; a step-up if a factor exists)
FactorRemover  -> require_step_up(action="remove_factor", ...)   (bound to the factor removed)

`NoBody` is declared on the route (`dependencies=[NoBody]`) of any route that takes no input; `optional_body(Model)`
reads the body of a route whose input is all optional (no body, `{}`, or exactly the model's fields).

Every dependency is `async def`, even one that only returns an attribute: FastAPI runs a plain `def` in the thread
pool, a hop to a worker thread and back for each, several per request (tests/test_hot_path.py checks).
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Path, Request
from pydantic import BaseModel, ValidationError

from .activity import ActivityLog, PendingEvent
from .api.schemas import TelegramIn
from .auth.login_flow import LoginFlow
from .auth.native_login import NativeSignIn
from .auth.sessions import Session, SessionManager, User
from .clock import Clock
from .errors import (
    FactorNotFound,
    IdempotencyKeyReused,
    InvalidCode,
    InvalidRequest,
    LoginRequired,
    NotFound,
    on_invalid_input,
)
from .fusionauth.client import FusionAuthClient
from .ops import request_context
from .ops.metrics import Metrics, SignInKind, StepUpOutcome, StepUpStep
from .ops.readiness import Readiness
from .services import Services
from .settings import Settings
from .stepup.factors import Factor, FactorService
from .stepup.service import StepUpService
from .stepup.transaction import Transaction, displayable
from .storage import EventBuilder
from .web.cookies import queue_cookie

logger = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def _services(request: Request) -> Services:
    services: Services = request.scope["state"]["services"]  # put there by the lifespan
    return services


async def get_services(request: Request) -> Services:
    return _services(request)


ServicesDep = Annotated[Services, Depends(get_services)]


def _service(pick: Callable[[Services], T]) -> Callable[[Request], Awaitable[T]]:
    """A dependency giving one of the request's services. It reads them from the request itself rather than depending
    on ServicesDep: FastAPI solves a sub-dependency's own dependencies again wherever it is used (its cache holds only
    the value), so one level less is one solve less per use on every request."""

    async def service(request: Request) -> T:
        return pick(_services(request))

    return service


async def get_native_sign_in(request: Request) -> NativeSignIn:
    services = _services(request)
    if not services.settings.login.native:
        # Off (the default): the routes do not exist as far as anyone outside can tell.
        raise NotFound()
    return services.native


SettingsDep = Annotated[Settings, Depends(_service(lambda services: services.settings))]
ClockDep = Annotated[Clock, Depends(_service(lambda services: services.clock))]
FusionAuthDep = Annotated[FusionAuthClient, Depends(_service(lambda services: services.fusionauth))]
SessionsDep = Annotated[SessionManager, Depends(_service(lambda services: services.sessions))]
LoginFlowDep = Annotated[LoginFlow, Depends(_service(lambda services: services.login))]
StepUpDep = Annotated[StepUpService, Depends(_service(lambda services: services.step_up))]
FactorsDep = Annotated[FactorService, Depends(_service(lambda services: services.factors))]
NativeSignInDep = Annotated[NativeSignIn, Depends(get_native_sign_in)]
MetricsDep = Annotated[Metrics, Depends(_service(lambda services: services.metrics))]
ActivityDep = Annotated[ActivityLog, Depends(_service(lambda services: services.activity))]
ReadinessDep = Annotated[Readiness, Depends(_service(lambda services: services.readiness))]


async def get_client_address(request: Request) -> str | None:
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


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json takes them, RFC 8259 does not


def _no_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        # Which of two values counts is where two parsers disagree (RFC 8259 section 4): refuse, do not pick.
        raise ValueError("a key appears twice")
    return dict(pairs)


def optional_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """For a route whose input is all optional: no body or `{}` gives `model()`, and otherwise the body is exactly a
    JSON object of `model`'s fields (unknown fields, repeated keys, NaN, a byte-order mark or bytes that are not UTF-8
    are 400 invalid_request, the input never echoed). Declared as the route's first parameter, it runs before the
    session is looked up, like NoBody.

        async def start(body: Annotated[StepUpStartIn, Depends(optional_body(StepUpStartIn))], ...)
    """

    async def read(request: Request) -> M:
        raw = await request.body()
        if not raw or _EMPTY_OBJECT.fullmatch(raw):
            return model()
        try:
            data = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=_no_repeated_keys)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return model.model_validate(data)
        except (UnicodeDecodeError, ValueError) as exc:  # ValidationError is a ValueError
            fields = (
                "; ".join(dict.fromkeys(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
                if isinstance(exc, ValidationError)
                else "the body is not a JSON object"
            )
            raise InvalidRequest(f"This request takes {_field_list(model)}: {fields}.") from None

    return read


def _field_list(model: type[BaseModel]) -> str:
    names = list(model.model_fields)
    return "no input, or {" + ", ".join(f'"{name}"' for name in names) + "}" if names else "no input"


async def get_optional_session(request: Request) -> Session | None:
    sessions = _services(request).sessions  # not SessionsDep: one dependency less to solve on every request
    cookie = request.cookies.get(sessions.cookie_name)
    session = await sessions.load(cookie)
    if session is not None:
        request_context.set_user(session.user.id)  # every later log line of this request names the user
    if cookie and session is None and await sessions.should_clear(cookie):
        # A cookie for a session that is over (signed out, expired, tampered): tell the browser to drop it.
        queue_cookie(request, sessions.clear_cookie_header())
    return session


OptionalSession = Annotated[Session | None, Depends(get_optional_session)]


async def require_session(session: OptionalSession) -> Session:
    if session is None:
        raise LoginRequired()
    return session


CurrentSession = Annotated[Session, Depends(require_session)]


async def get_current_user(session: CurrentSession) -> User:
    return session.user


CurrentUser = Annotated[User, Depends(get_current_user)]


@dataclass
class PrivilegedAction:
    """What a `require_privileged_action` guard yields: the session, and the action's activity event, which the route
    writes in the action's own transaction (`activity`, then `done`), so that the action and its record are committed
    together or not at all."""

    # Not in the repr: the session carries its id and its step-up's grant, neither of which may reach a log.
    session: Session = field(repr=False)
    event: PendingEvent | None  # None: an idempotent repeat, or a step-up waived (`needed`): nothing to record
    recorded: bool | None = None  # what the route said with `done`; None if it never did
    handed_out: bool = False  # the route took `activity` for a write

    @property
    def activity(self) -> EventBuilder | None:
        """For the database write that performs the action (its `activity=`)."""
        self.handed_out = True
        return self.event.build if self.event is not None else None

    def done(self, *, recorded: bool) -> None:
        """The action's transaction has committed; `recorded`: with the event (False: it turned out to be an
        idempotent repeat, which wrote nothing and records nothing)."""
        self.recorded = recorded


def _step_up_guard(
    max_age: int | None,
    action: str | None,
    transaction: Callable[..., Awaitable[Transaction]] | None,
    needed: Callable[..., Awaitable[bool]] | None,
    *,
    in_route: bool,
) -> Callable[..., AsyncIterator[Any]]:
    async def guard(
        request: Request,
        session: CurrentSession,
        # Given Depends() below only when the route's guard has them (see __signature__): otherwise no solve at all.
        required: bool = True,
        described: Transaction | None = None,
    ) -> AsyncIterator[Any]:
        # The service from the request itself, not a dependency: one solve less on every guarded request.
        step_up = _services(request).step_up
        if not required:
            yield PrivilegedAction(session, None) if in_route else session
            return
        authorization = await step_up.authorize(session, step_up.policy(action, max_age), described)
        if authorization.restore is not None:
            on_invalid_input(request, authorization.restore)
        privileged = PrivilegedAction(session, step_up.action_event(session, authorization)) if in_route else None
        try:
            yield privileged if privileged is not None else session
        except InvalidCode as exc:
            # A wrong code typed for the action itself (removing a factor takes a current code of it): nothing was
            # done, so the confirmation is given back while the attempts it allows remain (counted per confirmation,
            # stepup/factors.py); the last wrong one spends it, and a new step-up brings new attempts.
            if authorization.restore is not None and int(exc.extra.get("attempts_remaining", 0)) > 0:
                await authorization.restore()
            raise
        # Reached only when the route returned: the action ran.
        if privileged is None or (privileged.recorded is None and not privileged.handed_out):
            # Recorded after the action, in a transaction of its own (a route that did not write it itself).
            event = privileged.event if privileged is not None else step_up.action_event(session, authorization)
            await step_up.executed(event)
        elif privileged.recorded is None:
            # The route gave the event to a write and did not say whether it was written: written again here, it
            # could be there twice; so it is left to that write, and the route's omission is reported.
            logger.error("route %s took its activity event and did not call done()", request.scope.get("path"))
        elif privileged.recorded and privileged.event is not None:
            step_up.executed_with_action(privileged.event)

    # FastAPI solves every parameter with a Depends() default on every request: a guard lists only the dependencies
    # its route gave it. (FastAPI reads a function's parameters through inspect.signature, which honours this.)
    signature = inspect.signature(guard)
    kept = {"required": needed, "described": transaction}
    guard.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            parameter if parameter.name not in kept else parameter.replace(default=Depends(kept[parameter.name]))
            for parameter in signature.parameters.values()
            if parameter.name not in kept or kept[parameter.name] is not None
        ]
    )
    # Read at start-up (app.py) to check [step_up.actions] against the routes (stepup/policy.check_routes).
    guard.step_up_action = action  # type: ignore[attr-defined]
    guard.step_up_describes = transaction is not None  # type: ignore[attr-defined]
    return guard


def require_step_up(
    max_age: int | None = None,
    *,
    action: str | None = None,
    transaction: Callable[..., Awaitable[Transaction]] | None = None,
    needed: Callable[..., Awaitable[bool]] | None = None,
) -> Callable[..., AsyncIterator[Session]]:
    """A guard for any route: a second factor that satisfies the route's policy, else 401
    insufficient_user_authentication (RFC 9470). `action` names the policy ([step_up.actions.<name>]; without one,
    or for a name the settings do not declare, [step_up]'s values); `max_age` overrides its freshness. A bound action
    also needs `transaction`, a dependency that describes the request (its fields that matter, a summary). `needed`,
    a dependency, may waive the step-up for a request that no second factor could confirm (adding someone's first
    factor: they have none to step up with); it runs first, so it may also refuse the request. For example:

        FreshSession = Annotated[Session, Depends(require_step_up(max_age=60))]
        CloseAccount = Annotated[Session, Depends(require_step_up(action="close_account"), scope="function")]

    The action's activity event is written after the route returns, in a transaction of its own: with
    `scope="function"` before the answer leaves; without, just after. A route that writes to the database to act
    takes `require_privileged_action` instead, and writes the event in that same transaction.
    """
    return _step_up_guard(max_age, action, transaction, needed, in_route=False)


def require_privileged_action(
    max_age: int | None = None,
    *,
    action: str | None = None,
    transaction: Callable[..., Awaitable[Transaction]] | None = None,
    needed: Callable[..., Awaitable[bool]] | None = None,
) -> Callable[..., AsyncIterator[PrivilegedAction]]:
    """`require_step_up` for a route whose action is a database write: the guard yields a `PrivilegedAction`, and the
    route passes its `activity` to that write and then calls `done(recorded=...)`, so the action and its activity
    event commit together (no action without its record; an action whose record fails is not done). A route that
    never takes `activity` gets its event written after it returns, as with `require_step_up`; one that takes it and
    never calls `done` is reported (an ERROR line) and its event left to the write it was given to."""
    return _step_up_guard(max_age, action, transaction, needed, in_route=True)


def guarded_actions(calls: list[Callable[..., Any]]) -> list[tuple[str | None, bool]]:
    """(action, describes a transaction) of each step-up guard among `calls`."""
    return [
        (getattr(call, "step_up_action", None), bool(getattr(call, "step_up_describes", False)))
        for call in calls
        if hasattr(call, "step_up_action")
    ]


SteppedUpSession = Annotated[Session, Depends(require_step_up(), scope="function")]


async def get_stepped_up_user(session: SteppedUpSession) -> User:
    return session.user


SteppedUpUser = Annotated[User, Depends(get_stepped_up_user)]

# Visible ASCII only, declared where it is read so that a bad key is an input error before any guard consumes a grant.
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")]


async def describe_telegram(
    # CurrentSession, not CurrentUser: FastAPI re-walks a dependency's sub-tree at every use, one level less here.
    body: TelegramIn,
    session: CurrentSession,
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> Transaction:
    """A telegram as the transaction its step-up confirms. The same Idempotency-Key again with the same fields is the
    request that already ran: it needs no step-up, since it will answer with the original and send nothing; with
    other fields it is refused here (422), before it could cost a step-up."""
    if idempotency_key is not None:
        stored = await services.telegrams.find_telegram(session.user.id, idempotency_key)
        if stored is not None:
            if (stored.recipient, stored.message) != (body.recipient, body.message):
                raise IdempotencyKeyReused()
            return body.transaction(already_done=True)
    return body.transaction()


TelegramSender = Annotated[
    PrivilegedAction,
    Depends(require_privileged_action(action="send_telegram", transaction=describe_telegram), scope="function"),
]


# -- the second factors a person manages (stepup/factors.py) -------------------------------------------------------


async def get_user_factors(session: CurrentSession, factors: FactorsDep) -> list[Factor]:
    """The signed-in person's second factors, asked of FusionAuth once per request (FastAPI caches a dependency's
    value within a request, so a describer and its route share it)."""
    return await factors.factors(session.user.id)


UserFactors = Annotated[list[Factor], Depends(get_user_factors)]


async def require_recent_sign_in(session: CurrentSession, factors: FactorsDep) -> Session:
    """401 reauthentication_required unless the person signed in within enrolment.max_auth_age."""
    factors.require_recent_sign_in(session)
    return session


RecentlySignedIn = Annotated[Session, Depends(require_recent_sign_in)]


async def has_a_factor(_: RecentlySignedIn, factors: UserFactors) -> bool:
    """Whether adding a factor needs a step-up: yes once the person has one. Their first cannot be confirmed with a
    second factor they do not have; the recent sign-in (checked first, here) is then the whole proof."""
    return bool(factors)


async def describe_enrolment() -> Transaction:
    return Transaction(fields={"method": "authenticator"}, summary="adding an authenticator app to your account")


FactorAdder = Annotated[
    Session,
    Depends(
        require_step_up(action="add_factor", transaction=describe_enrolment, needed=has_a_factor), scope="function"
    ),
]

FactorId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
_FACTOR_WORDS = {"authenticator": "authenticator app", "email": "email codes", "sms": "text-message codes"}


def factor_named(factors: list[Factor], factor_id: str) -> Factor:
    factor = next((factor for factor in factors if factor.id == factor_id), None)
    if factor is None:
        raise FactorNotFound()
    return factor


async def describe_removal(factor_id: FactorId, factors: UserFactors) -> Transaction:
    """Removing one factor, by its id, as the person confirms it. 404 for a factor they do not have, before any
    step-up is spent on it. FusionAuth removes every factor for a recovery code: the summary says so."""
    factor = factor_named(factors, factor_id)
    # The person reads this in the step-up dialog: plain words, not "second factor" (issue 17).
    words = _FACTOR_WORDS.get(factor.method, "way to confirm it's you")
    summary = f"removing your {words} “{displayable(factor.hint)}”"
    if len(factors) == 1:
        summary += ", your only way to confirm it's you"
    else:
        summary += f" (with a recovery code: all {len(factors)} of your ways to confirm it's you)"
    return Transaction(fields={"factor": factor.id}, summary=summary)


FactorRemover = Annotated[
    Session, Depends(require_step_up(action="remove_factor", transaction=describe_removal), scope="function")
]


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
