"""The benchmark's anchor: a bare FastAPI route answering a small JSON body, served by uvicorn exactly as
`stepup-bff serve` serves the BFF (the same options from `stepup_bff.cli.server_options`, the same kind of socket,
one worker, no access log), in a process of its own.

    python bench/bare.py PORT

Beside it, the floors: bare FastAPI routes that do nothing but a BFF route's own irreducible work, with the BFF's own
code, on the BFF's store and database (the same STEPUP_* settings, so the bench's session cookie is valid here):

- `GET /floor/session`: the session check, `SessionManager.load` (the cookie's signature, the one store read, the
  record opened with AES-GCM, the idle and absolute timeouts), then `{"status": "ok"}`, or 401 without a session.
- `POST /floor/telegram`: the session check, then the telegram committed and synced before the 201
  (`create_telegram`, the same group commit), the Idempotency-Key honoured.

No middleware, no dependency injection, no CSRF or edge rules, no security headers, no access line, no step-up
guard, no activity event: what separates a BFF route from its floor is the cost of everything around the work, and
the floor itself is what the work costs in this process on this machine.
"""

from __future__ import annotations

import gc
import json
import secrets
import sys
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
from stepup_bff.settings import load_settings
from stepup_bff.storage import Telegram, open_database, open_store


def main() -> None:
    # The BFF's settings from the environment (bench/run.py passes the same STEPUP_* variables to both).
    settings = load_settings()
    clock = SystemClock()
    state: dict[str, Any] = {}

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

    @app.get("/floor/session")
    async def floor_session(request: Request) -> Any:
        sessions: SessionManager = state["sessions"]
        if await sessions.load(request.cookies.get(sessions.cookie_name)) is None:
            return JSONResponse({"error": "login_required"}, status_code=401)
        return {"status": "ok"}

    @app.post("/floor/telegram", status_code=201)
    async def floor_telegram(request: Request) -> Any:
        sessions: SessionManager = state["sessions"]
        session = await sessions.load(request.cookies.get(sessions.cookie_name))
        if session is None:
            return JSONResponse({"error": "login_required"}, status_code=401)
        body = json.loads(await request.body())
        telegram = Telegram(
            id="tg_" + secrets.token_urlsafe(12),
            user_id=session.user.id,
            recipient=str(body["recipient"]),
            message=str(body["message"]),
            created_at=clock.now(),
        )
        await state["database"].create_telegram(telegram, request.headers.get("idempotency-key"))
        return {"status": "ok"}

    gc.collect()
    gc.freeze()  # as `serve` does (stepup_bff/cli.py), so that the collector weighs the same on both sides
    uvicorn.Server(uvicorn.Config(app, **server_options())).run(sockets=[bind_tcp("127.0.0.1", int(sys.argv[1]))])


if __name__ == "__main__":
    main()
