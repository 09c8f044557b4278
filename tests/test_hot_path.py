"""What every request runs through, held to the choices that make it cheap, without timing anything (the figures
come from bench/run.py): no dependency in the thread pool, the C HTTP parser and event loop, no backend library
loaded for nothing, the cookie signature exactly itsdangerous' own, the access line a complete log record."""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import uvicorn
from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from itsdangerous import URLSafeTimedSerializer
from pydantic import SecretStr
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conftest import FakeClock
from stepup_bff.app import ROUTERS, add_routes, create_app
from stepup_bff.auth.sessions import Session
from stepup_bff.cli import server_options
from stepup_bff.deps import require_step_up
from stepup_bff.ops.logs import AccessLogHandler, TextFormatter
from stepup_bff.ops.request_context import AccessRecord, log_access
from stepup_bff.settings import Settings
from stepup_bff.web.cookies import make_serializer


def _dependencies(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependencies(sub)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI keeps it whole)
            yield from _api_routes(route.original_router.routes)


def test_the_routes_are_on_the_apps_own_table_and_the_same_operations_as_included(settings: Settings) -> None:
    """FastAPI matches an included router twice per request (stepup_bff.app.add_routes): the routes are the app's
    own, in the routers' order, and describe exactly what including the routers would."""
    app = create_app(settings)
    assert not [route for route in app.routes if hasattr(route, "original_router")]
    ours = [route for route in app.routes if isinstance(route, APIRoute)]
    assert ours == [route for router in ROUTERS for route in router.routes]
    included = FastAPI(title=app.title, version=app.version, openapi_url=app.openapi_url)
    for router in ROUTERS:
        included.include_router(router)
    assert app.openapi()["paths"] == included.openapi()["paths"]
    assert app.openapi()["components"] == included.openapi()["components"]


@pytest.mark.parametrize(
    "options",
    [{"dependencies": [Depends(lambda: None)]}, {"responses": {404: {"description": "no"}}}, {"max_body_size": 10}],
)
def test_routes_are_not_added_to_an_app_whose_own_route_options_they_would_skip(options: dict[str, Any]) -> None:
    from fastapi.responses import HTMLResponse

    with pytest.raises(ValueError, match="include the routers"):
        add_routes(FastAPI(**options), ROUTERS)
    with pytest.raises(ValueError, match="include the routers"):
        add_routes(FastAPI(default_response_class=HTMLResponse), ROUTERS)


def test_no_dependency_of_any_route_runs_in_the_thread_pool(settings: Settings) -> None:
    """FastAPI runs a plain `def` dependency in a worker thread: a hop there and back on every request."""
    app = create_app(settings)
    routes = list(_api_routes(app.routes))
    assert len(routes) > 10
    sync = {
        f"{route.path}: {sub.call.__qualname__}"
        for route in routes
        for sub in _dependencies(route.dependant)
        if sub.call is not None and not (inspect.iscoroutinefunction(sub.call) or inspect.isasyncgenfunction(sub.call))
    }
    assert sync == set()
    endpoints = {route.path for route in routes if not inspect.iscoroutinefunction(route.endpoint)}
    assert endpoints == set()


def test_each_step_up_guard_solves_only_the_dependencies_its_route_gave_it(settings: Settings) -> None:
    """FastAPI solves every Depends() parameter on every request: a guard without `needed` or `transaction` has no
    such parameter, and none takes the step-up service as a dependency (it reads it from the request)."""
    app = create_app(settings)
    guards = {
        (route.path, method): [sub.call.__name__ for sub in guard.dependencies if sub.call is not None]
        for route in _api_routes(app.routes)
        for method in route.methods
        for guard in _dependencies(route.dependant)
        if guard.call is not None and hasattr(guard.call, "step_up_action")
    }
    assert guards == {
        ("/api/telegrams", "POST"): ["require_session", "describe_telegram"],
        # Adding an authenticator waives the step-up for someone with no factor yet (`needed`), and is bound.
        ("/api/factors/authenticator/start", "POST"): ["require_session", "has_a_factor", "describe_enrolment"],
        ("/api/factors/{factor_id}", "DELETE"): ["require_session", "describe_removal"],
    }
    plain = FastAPI()

    @plain.get("/fresh")
    async def fresh(session: Annotated[Session, Depends(require_step_up(max_age=60))]) -> None: ...

    [guard] = [sub for route in _api_routes(plain.routes) for sub in route.dependant.dependencies]
    assert [sub.call.__name__ for sub in guard.dependencies if sub.call is not None] == ["require_session"]


def test_serve_runs_on_httptools_and_uvloop(settings: Settings) -> None:
    """uvicorn's "auto" picks them when installed, and the production install has them (pyproject.toml)."""
    config = uvicorn.Config(create_app(settings), **server_options())
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    loop_factory = config.get_loop_factory()
    assert loop_factory is not None
    loop = loop_factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    assert config.access_log is False and config.proxy_headers is False  # the app writes and applies its own


def test_a_worker_on_sqlite_loads_neither_redis_nor_psycopg_nor_the_qr_encoder(tmp_path: Path) -> None:
    code = (
        "import sys, stepup_bff.app, stepup_bff.cli, stepup_bff.storage; "
        "print(sorted(m for m in ('redis', 'psycopg', 'psycopg_pool', 'segno') if m in sys.modules))"
    )
    command = [sys.executable, "-c", code]
    loaded = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path)  # noqa: S603
    assert loaded.stdout.strip() == "[]"
    from stepup_bff.storage import PostgresDatabase, RedisStore  # still importable by name, when wanted

    assert RedisStore.__name__ == "RedisStore" and PostgresDatabase.__name__ == "PostgresDatabase"


KEYS = [SecretStr("new-key-" + "n" * 32), SecretStr("old-key-" + "o" * 32)]


def test_session_cookie_signatures_are_itsdangerous_own(clock: FakeClock) -> None:
    """Our serializer caches its signer and derived keys and computes the HMAC in one call: what it signs and what
    it accepts must be exactly what itsdangerous' own serializer signs and accepts."""
    ours = make_serializer(KEYS, salt="stepup-bff/session", clock=clock)
    plain = URLSafeTimedSerializer(
        [key.get_secret_value() for key in reversed(KEYS)],
        salt="stepup-bff/session",
        signer_kwargs={"digest_method": hashlib.sha256},
    )
    payload = {"sid": "abc", "uid": "u1", "name": "Alice", "iat": 1.0}
    clock.current = time.time()  # itsdangerous' own serializer reads the real clock
    assert ours.dumps(payload) == plain.dumps(payload)
    assert ours.loads(plain.dumps(payload), max_age=60) == payload
    for _ in range(3):  # the cached signer keeps refusing what it must refuse
        signed = ours.dumps(payload)
        with pytest.raises(Exception, match="Signature"):
            ours.loads(signed[:-2] + ("AA" if not signed.endswith("AA") else "BB"), max_age=60)
    old_only = make_serializer(KEYS[1:], salt="stepup-bff/session", clock=clock)
    assert ours.loads(old_only.dumps(payload), max_age=60) == payload  # rotation: the old key still verifies
    assert make_serializer(KEYS, salt="stepup-bff/other", clock=clock).dumps(payload) != ours.dumps(payload)
    with pytest.raises(Exception, match="Signature"):
        make_serializer(KEYS, salt="stepup-bff/other", clock=clock).loads(ours.dumps(payload), max_age=60)


def test_the_access_record_is_a_complete_log_record() -> None:
    record = AccessRecord(("127.0.0.1", "GET", "/healthz", "1.1", 200, 1.25), 200, 1.25)
    standard = logging.LogRecord("stepup_bff.access", logging.INFO, __file__, 1, "x", None, None)
    assert set(vars(standard)) <= set(vars(record))
    assert record.getMessage() == '127.0.0.1 - "GET /healthz HTTP/1.1" 200 1.2ms'
    assert abs(record.created - time.time()) < 5 and 0 <= record.msecs < 1000
    assert record.levelname == "INFO" and record.name == "stepup_bff.access" and record.exc_info is None
    formatted = TextFormatter().format(record)
    assert formatted[:19] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
    assert formatted[19] == "," and formatted[20:23] == f"{int(record.msecs):03d}"


@pytest.fixture
def access_stream() -> Iterator[tuple[io.StringIO, AccessLogHandler]]:
    logger = logging.getLogger("stepup_bff.access")
    saved: dict[str, Any] = {"handlers": logger.handlers[:], "level": logger.level, "propagate": logger.propagate}
    stream = io.StringIO()
    handler = AccessLogHandler(stream)
    handler.setFormatter(TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield stream, handler
    finally:
        handler.close()
        logger.handlers[:] = saved["handlers"]
        logger.setLevel(saved["level"])
        logger.propagate = saved["propagate"]


class _CountingStream(io.StringIO):
    """A stream that counts its writes and flushes: written straight through, as sys.stdout is under
    PYTHONUNBUFFERED=1, each write would be a system call."""

    flushes = 0
    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_access_lines_are_flushed_together_and_soon(access_stream: tuple[io.StringIO, AccessLogHandler]) -> None:
    _, handler = access_stream
    stream = _CountingStream()
    handler.setStream(stream)
    stream.flushes = 0
    scope = {"type": "http", "method": "GET", "path": "/a b", "query_string": b"x=1", "client": ("10.0.0.7", 1)}
    for _ in range(50):
        log_access(scope, 200, 0.001)
    assert (stream.writes, stream.flushes) == (0, 0)  # fifty lines, nothing written or flushed yet
    deadline = time.monotonic() + 10
    while stream.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (stream.writes, stream.flushes) == (1, 1)  # one write and one flush for all of them, a moment later
    lines = stream.getvalue().splitlines()
    assert len(lines) == 50 and lines[0].endswith('10.0.0.7 - "GET /a%20b?x=1 HTTP/1.1" 200 1.0ms')
    handler.flush()  # logging.shutdown() does this at exit
    assert stream.flushes == 2


def test_access_lines_waiting_are_bounded_and_handed_over_on_close(
    access_stream: tuple[io.StringIO, AccessLogHandler],
) -> None:
    _, handler = access_stream
    stream = _CountingStream()
    handler.setStream(stream)
    scope = {"type": "http", "method": "GET", "path": "/" + "p" * 200, "query_string": b"", "client": None}
    for _ in range(2000):  # about 600 KiB: far past MAX_PENDING, far within one flush interval
        log_access(scope, 200, 0.001)
    assert stream.writes >= 2000 * 250 // AccessLogHandler.MAX_PENDING - 1  # written as it reached the bound
    assert len(stream.getvalue()) >= 2000 * 250 - AccessLogHandler.MAX_PENDING - 300
    log_access(scope, 200, 0.001)
    handler.close()  # closed on its own, not by logging.shutdown(): what it held is written all the same
    assert len(stream.getvalue().splitlines()) == 2001


def test_access_lines_still_redact_and_quote(access_stream: tuple[io.StringIO, AccessLogHandler]) -> None:
    stream, handler = access_stream
    scope = {"type": "http", "method": "GET", "path": "/x\n/forged", "query_string": b"", "client": None}
    log_access(scope, 404, 0.002)
    callback = {"type": "http", "method": "GET", "path": "/auth/callback", "query_string": b"code=SECRET&state=S"}
    log_access(callback, 303, 0.002)
    handler.flush()
    first, second = stream.getvalue().splitlines()
    assert first.endswith('- - "GET /x%0A/forged HTTP/1.1" 404 2.0ms')
    assert "SECRET" not in second and "/auth/callback?[redacted]" in second
    json.dumps(first)  # one line each
