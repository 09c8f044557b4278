"""The application factory. Nothing is built at import time: settings, HTTP client and store come to life in
`create_app(settings)` and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from . import __version__
from .api import auth, health, session, step_up, telegrams
from .auth.login_flow import LoginFlow
from .auth.sessions import SessionManager, SessionRecord
from .auth.tokens import TokenVerifier
from .clock import Clock, SystemClock
from .deps import csrf_guard
from .errors import install_error_handlers
from .fusionauth.client import FusionAuthClient, build_http_client
from .ops.metrics import Metrics, SessionEndReason
from .ops.readiness import Readiness, readiness_probes
from .ops.request_context import RequestContextMiddleware
from .services import Services
from .settings import Settings, load_settings
from .stepup.service import StepUpService
from .storage import open_store
from .web.cookies import PendingCookiesMiddleware
from .web.security_headers import SecurityHeadersMiddleware

# Every body this API accepts is a few hundred bytes (a telegram is at most ~600). Refusing more before it is read
# keeps an anonymous, cross-site request from making us buffer and parse megabytes (CSRF checks run later).
MAX_BODY_SIZE = 16 * 1024


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


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    clock = clock if clock is not None else SystemClock()
    metrics = metrics if metrics is not None else Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with (
            build_http_client(settings.fusionauth) as http,
            open_store(settings.storage.url, clock, on_error=metrics.store_error) as store,
        ):
            fusionauth = FusionAuthClient(settings.fusionauth, http, clock, metrics)

            async def session_ended(record: SessionRecord, reason: SessionEndReason) -> None:
                metrics.session_ended(reason)
                await fusionauth.revoke_refresh_token_quietly(record.tokens.refresh_token_id)

            sessions = SessionManager(settings, store, clock, on_end=session_ended)
            yield {
                "services": Services(
                    settings=settings,
                    clock=clock,
                    store=store,
                    telegrams=store,
                    fusionauth=fusionauth,
                    tokens=TokenVerifier(fusionauth, str(settings.fusionauth.application_id), clock),
                    sessions=sessions,
                    login=LoginFlow(settings, store, clock),
                    step_up=StepUpService(
                        settings.step_up,
                        store,
                        fusionauth,
                        sessions,
                        clock,
                        # httpx applies its timeouts per phase: connect, then write, then read.
                        lock_ttl=settings.fusionauth.connect_timeout + 2 * settings.fusionauth.timeout + 5,
                    ),
                    metrics=metrics,
                    readiness=Readiness(readiness_probes(store, fusionauth), clock),
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
        dependencies=[Depends(csrf_guard)],
        max_body_size=MAX_BODY_SIZE,
        # The interactive docs load scripts from a CDN, which our CSP forbids; the OpenAPI document stays.
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(session.router)
    app.include_router(step_up.router)
    app.include_router(telegrams.router)
    app.mount("/", StaticFiles(directory=settings.frontend_dir or default_frontend_dir(), html=True), name="frontend")
    app.add_middleware(PendingCookiesMiddleware)
    app.add_middleware(SecurityHeadersMiddleware, https=settings.cookie_secure)
    return app
