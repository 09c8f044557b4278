"""The application factory. Nothing is built at import time: settings, HTTP client and store come to life in
`create_app(settings)` and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from . import __version__
from .api import auth, health, session, step_up, telegrams
from .auth.login_flow import LoginFlow
from .auth.sessions import SessionManager
from .auth.tokens import TokenVerifier
from .clock import Clock, SystemClock
from .deps import csrf_guard
from .errors import install_error_handlers
from .fusionauth.client import FusionAuthClient, build_http_client
from .services import Services
from .settings import Settings, load_settings
from .stepup.service import StepUpService
from .storage import open_database, open_store
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


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    clock = clock if clock is not None else SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        # One client per backend, each with its own pool and timeouts; all closed when the app stops.
        async with (
            build_http_client(settings.fusionauth) as http,
            open_store(settings.storage, clock) as store,
            open_database(settings.database) as database,
        ):
            fusionauth = FusionAuthClient(settings.fusionauth, http, clock)
            sessions = SessionManager(
                settings,
                store,
                clock,
                on_end=lambda ended: fusionauth.revoke_refresh_token_quietly(ended.refresh_token_id),
            )
            yield {
                "services": Services(
                    settings=settings,
                    clock=clock,
                    store=store,
                    telegrams=database,
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
                )
            }

    app = FastAPI(
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
