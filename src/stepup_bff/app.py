"""The application factory. Nothing is built at import time: settings, HTTP client and store come to life in
`create_app(settings)` and its lifespan."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp

from . import __version__
from .activity import ActivityLog
from .activity.agents import warm_up
from .api import activity, auth, factors, health, native, session, sessions, step_up, telegrams, webhooks
from .auth.lifecycle import SessionLifecycle
from .auth.login_flow import LoginFlow
from .auth.native_login import NativeSignIn
from .auth.refresh import TokenRefresher
from .auth.sessions import LEASE_MARGIN, EndedSession, SessionManager
from .auth.tokens import TokenVerifier
from .clock import Clock, SystemClock
from .deps import guarded_actions
from .errors import install_error_handlers
from .fusionauth.client import FusionAuthClient, build_http_client
from .fusionauth.webhooks import WebhookVerifier
from .ops.metrics import Metrics, SessionEndReason
from .ops.readiness import Readiness, readiness_probes
from .ops.request_context import RequestContextMiddleware
from .services import Services
from .settings import Settings, load_settings
from .stepup.challenge import ChallengeMachine
from .stepup.factors import FactorService
from .stepup.policy import check_routes
from .stepup.service import StepUpService
from .storage import open_database, open_store
from .web.cookies import PendingCookiesMiddleware
from .web.edge import EdgeMiddleware
from .web.methods import HeadMiddleware
from .web.security_headers import SecurityHeadersMiddleware


def default_frontend_dir() -> Path:
    packaged = Path(__file__).parent / "frontend"  # a wheel install carries the SPA inside the package
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "frontend"  # a source checkout


class _App(FastAPI):
    """FastAPI with one middleware outside all of FastAPI's own: the request context (ops/request_context.py), so
    that the answers FastAPI writes itself (500 from ServerErrorMiddleware, 413 from the body limit) also carry the
    request id and are timed, counted and logged."""

    def __init__(self, *, outermost: Callable[[ASGIApp], ASGIApp], **options: Any) -> None:
        self._outermost = outermost
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return self._outermost(super().build_middleware_stack())


# The app's routers, in the order they are included.
# The router tries routes in this order, and no two of these routers share a path: the ones the SPA calls on every
# page come first, so they are found after the fewest tries.
ROUTERS = (
    health.router,
    session.router,
    telegrams.router,
    step_up.router,
    auth.router,
    native.router,
    activity.router,
    sessions.router,
    webhooks.router,
    factors.router,
)


def add_routes(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """The routers' routes, on the app's own route table rather than included.

    FastAPI (0.165) includes a router as a lazy `_IncludedRouter` that every request matches twice (once to pick the
    router, once to pick its route), router after router, with the scope bookkeeping of each step: a fifth of a
    signed-in GET /api/session in our profile, for nothing. A route is complete when declared: `APIRouter` applies its
    prefix, tags, dependencies, responses and response class to each route then, and these routers are included with
    no options of their own, so the routes alone are the same operations (the OpenAPI document is the same,
    tests/test_hot_path.py). What an included route would also get, and these do not: `app.dependency_overrides`,
    and the app's own route options. This project's tests never replace its own dependencies (they run the real ones
    against mocked backends), and the app sets no such option, which is checked here so that one added later is not
    silently skipped; a copy that needs either must include its routers instead."""
    own = app.router
    if own.dependencies or own.responses or own.callbacks or own.max_body_size is not None:
        raise ValueError("the app has route options of its own: include the routers (app.include_router) instead")
    if not isinstance(own.default_response_class, DefaultPlaceholder):
        raise ValueError("the app has a default response class: include the routers (app.include_router) instead")
    for router in routers:
        own.routes.extend(router.routes)


def step_up_guards(routes: Iterable[Any]) -> list[tuple[str | None, bool]]:
    """Every step-up guard these routes use: (action, describes its transaction)."""
    calls: list[Any] = []

    def walk(dependant: Dependant) -> None:
        for dependency in dependant.dependencies:
            calls.append(dependency.call)
            walk(dependency)

    def visit(routes: Iterable[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                walk(route.dependant)
            included = getattr(route, "original_router", None)  # an included router (FastAPI wraps each one)
            if included is not None:
                visit(included.routes)

    visit(routes)
    return guarded_actions(calls)


def check_step_up_actions(settings: Settings, routes: Iterable[Any] | None = None) -> None:
    """ConfigError if [step_up.actions] names an action no route has, or binds one whose route cannot be bound.
    `routes` defaults to the app's own routers' (`serve` checks before it builds any app)."""
    own = [route for router in ROUTERS for route in router.routes]
    check_routes(settings.step_up, step_up_guards(routes if routes is not None else own))


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    clock = clock if clock is not None else SystemClock()
    # Without metrics.port nothing can read the metrics: the per-request series are then not recorded at all.
    metrics = metrics if metrics is not None else Metrics(exported=settings.metrics.port is not None)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # Every route is known by now, those added after create_app() too.
        check_step_up_actions(settings, app.router.routes)
        # ua-parser compiles its rules on first use (~0.5 s): in a thread now, not on the loop at the first sign-in.
        threading.Thread(target=warm_up, name="user-agent-rules", daemon=True).start()
        # One client per backend, each with its own pool and timeouts; all closed when the app stops.
        async with (
            build_http_client(settings.fusionauth) as http,
            open_store(settings.storage, clock, on_error=metrics.store_error) as store,
            open_database(settings.database, on_error=metrics.store_error) as database,
        ):
            fusionauth = FusionAuthClient(settings.fusionauth, http, clock, metrics)
            activity_log = ActivityLog(database, clock, metrics)

            async def session_ended(ended: EndedSession, reason: SessionEndReason) -> None:
                metrics.session_ended(reason)
                await fusionauth.revoke_refresh_token_quietly(ended.refresh_token_id)
                # Every way a session ends passes here (sign-out, a new sign-in, a timeout, a revocation): one event
                # each, a reason this release does not know recorded as an ended session.
                await activity_log.session_ended(ended.user_id, reason)

            # httpx applies its timeouts per phase: connect, then write, then read.
            one_call = settings.fusionauth.connect_timeout + 2 * settings.fusionauth.timeout
            tokens = TokenVerifier(fusionauth, str(settings.fusionauth.application_id), clock)
            sessions = SessionManager(
                settings,
                store,
                clock,
                on_end=session_ended,
                refresher=TokenRefresher(fusionauth, tokens),
                # A refresh may fetch discovery and the JWKS as well as call the token endpoint.
                refresh_lease=3 * one_call + 2 * LEASE_MARGIN,
            )
            challenges = ChallengeMachine(settings.step_up, store, fusionauth, clock, lock_ttl=one_call + 5)
            step_up_service = StepUpService(
                settings.step_up, store, fusionauth, sessions, clock, challenges, activity_log, metrics
            )
            lifecycle = SessionLifecycle(settings, store, sessions, step_up_service, fusionauth, clock)
            yield {
                "services": Services(
                    settings=settings,
                    clock=clock,
                    store=store,
                    telegrams=database,
                    fusionauth=fusionauth,
                    tokens=tokens,
                    sessions=sessions,
                    login=LoginFlow(settings, store, clock),
                    step_up=step_up_service,
                    factors=FactorService(
                        settings, store, fusionauth, sessions, challenges, step_up_service, activity_log, clock
                    ),
                    native=NativeSignIn(
                        settings, store, fusionauth, tokens, sessions, challenges, step_up_service, clock
                    ),
                    metrics=metrics,
                    readiness=Readiness(readiness_probes(store, database, fusionauth), clock),
                    activity=activity_log,
                    webhooks=WebhookVerifier(settings.fusionauth, fusionauth, tokens),
                    lifecycle=lifecycle,
                )
            }

    app = _App(
        outermost=lambda inner: RequestContextMiddleware(
            inner,
            forwarded_allow_ips=settings.server.forwarded_allow_ips,
            metrics=metrics,
            access_log=settings.access_log,
        ),
        title="stepup-bff",
        version=__version__,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry instrumentation: off. It would look for a configured OpenTelemetry SDK on
        # every request, and this service reports through Prometheus (ops/metrics.py) and its own access log.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # The interactive docs load scripts from a CDN, which our CSP forbids; the OpenAPI document stays.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(app)
    add_routes(app, ROUTERS)
    # The SPA's files rank below every route, including one that matches the path but not the method: GET on a
    # POST route is a 405 that says what is allowed, not a 404 from a catch-all. No fallback page: an unknown
    # path is a 404.
    app.frontend("/", directory=settings.frontend_dir or default_frontend_dir(), fallback=None, check_dir=True)
    # Innermost first. The edge refuses before routing (its answers still get the security headers); HEAD wraps
    # it so that even a refusal of a HEAD goes out without a body.
    app.add_middleware(PendingCookiesMiddleware)
    app.add_middleware(EdgeMiddleware, public_url=settings.public_url)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.cookie_secure)
    return app
