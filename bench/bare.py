"""The benchmark's anchor: a bare FastAPI route answering a small JSON body, served by uvicorn exactly as
`stepup-bff serve` serves the BFF (the same options from `stepup_bff.cli.server_options`, the same kind of socket,
one worker, no access log), in a process of its own.

    python bench/bare.py PORT

Beside it, the floors: bare FastAPI routes doing what a BFF route cannot do without, with the BFF's own code, on the
BFF's store and database (the same STEPUP_* settings, so the bench's session cookie is valid here). What every answer
of the BFF carries, each floor carries too: the security headers (web/security_headers.py) and, unless
`access_log = false`, the access line (ops/request_context.log_access, through the same logging set-up). Then:

- `GET /floor/healthz`: nothing more.
- `GET /floor/session`: the session check, `SessionManager.load` (the cookie's signature, the one store read, the
  record opened with AES-GCM, the idle and absolute timeouts), then `{"status": "ok"}`, or 401 without a session.
- `POST /floor/telegram`: the session check, then the telegram committed and synced before the 201
  (`create_telegram`, the same group commit), the Idempotency-Key honoured.

No middleware, no dependency injection, no edge rules (CSRF, media type, body limit, repeated headers), no request
id, no step-up guard, no activity event: what separates a BFF route from its floor is the cost of everything around
the work, and the floor itself is what the work costs in this process on this machine.
"""

from __future__ import annotations

import gc
import json
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from stepup_bff.auth.sessions import SessionManager
from stepup_bff.cli import server_options
from stepup_bff.clock import SystemClock
from stepup_bff.ops.listen import bind_tcp
from stepup_bff.ops.request_context import log_access
from stepup_bff.settings import load_settings
from stepup_bff.storage import Telegram, open_database, open_store
from stepup_bff.web.security_headers import response_headers


def main() -> None:
    # The BFF's settings from the environment (bench/run.py passes the same STEPUP_* variables to both).
    settings = load_settings()
    clock = SystemClock()
    state: dict[str, Any] = {}
    headers = {
        private: {name.decode(): value.decode() for name, value in response_headers(https=False, private=private)}
        for private in (False, True)
    }

    def answer(request: Request, started: float, body: dict[str, str], status: int = 200) -> JSONResponse:
        # As the BFF's own answers: /healthz public, the API's private (no-store).
        response = JSONResponse(body, status_code=status, headers=headers[request.scope["path"] != "/floor/healthz"])
        if settings.access_log:
            log_access(request.scope, status, time.perf_counter() - started)
        return response

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings.storage, clock) as store, open_database(settings.database) as database:
            state["sessions"] = SessionManager(settings, store, clock)
            state["database"] = database
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/floor/healthz")
    async def floor_healthz(request: Request) -> JSONResponse:
        return answer(request, time.perf_counter(), {"status": "ok"})

    @app.get("/floor/session")
    async def floor_session(request: Request) -> JSONResponse:
        started = time.perf_counter()
        sessions: SessionManager = state["sessions"]
        if await sessions.load(request.cookies.get(sessions.cookie_name)) is None:
            return answer(request, started, {"error": "login_required"}, 401)
        return answer(request, started, {"status": "ok"})

    @app.post("/floor/telegram")
    async def floor_telegram(request: Request) -> JSONResponse:
        started = time.perf_counter()
        sessions: SessionManager = state["sessions"]
        session = await sessions.load(request.cookies.get(sessions.cookie_name))
        if session is None:
            return answer(request, started, {"error": "login_required"}, 401)
        body = json.loads(await request.body())
        telegram = Telegram(
            id="tg_" + secrets.token_urlsafe(12),
            user_id=session.user.id,
            recipient=str(body["recipient"]),
            message=str(body["message"]),
            created_at=clock.now(),
        )
        await state["database"].create_telegram(telegram, request.headers.get("idempotency-key"))
        return answer(request, started, {"status": "ok"}, 201)

    gc.collect()
    gc.freeze()  # as `serve` does (stepup_bff/cli.py), so that the collector weighs the same on both sides
    uvicorn.Server(uvicorn.Config(app, **server_options())).run(sockets=[bind_tcp("127.0.0.1", int(sys.argv[1]))])


if __name__ == "__main__":
    main()
