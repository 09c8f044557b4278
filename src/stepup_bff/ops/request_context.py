"""What every request carries through the code: a request id, its route, and who is signed in.

`RequestContextMiddleware` wraps the whole app, FastAPI's own middleware included (app.py). For each request it
- takes the `X-Request-ID` of a trusted proxy (the direct peer is in `server.forwarded_allow_ips`, the same rule as
  `X-Forwarded-For`) when it has a safe shape, or makes one, and returns it on the response;
- applies `X-Forwarded-For`/`-Proto` from trusted proxies (uvicorn's ProxyHeadersMiddleware, run here rather than
  by uvicorn, because uvicorn's rewrites the client address before the app could see the direct peer);
- puts a `RequestContext` in a context variable, which the log records (ops/logs.py) and the FusionAuth calls
  (`X-Request-ID` header) read;
- times the request for the metrics and writes the access log line.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

if TYPE_CHECKING:
    from .metrics import Metrics

# Its own logger, so operators can route or silence it apart from the application's lines.
access_logger = logging.getLogger("stepup_bff.access")

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "unmatched"  # the route label of a request no route matched (a fixed label, not its path)
# Visible ASCII without spaces, quotes or separators that could forge a log line or a header; 128 is far more
# than a UUID or a trace id needs.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


@dataclass(eq=False, slots=True)
class RequestContext:
    request_id: str
    scope: Scope
    user_id: str | None = None  # set once the session is known (deps.get_optional_session)

    @property
    def route(self) -> str | None:
        # Known once the router has matched; read lazily so log lines written later in the request have it.
        return route_template(self.scope) if "route" in self.scope or "endpoint" in self.scope else None


_current: ContextVar[RequestContext | None] = ContextVar("stepup_bff_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    context = _current.get()
    return context.request_id if context is not None else None


def set_user(user_id: str) -> None:
    context = _current.get()
    if context is not None:
        context.user_id = user_id


def route_template(scope: Scope) -> str:
    """The matched route's path template (`/api/step-up/start`), never the raw path."""
    route = scope.get("route")
    if isinstance(route, Mount):
        return f"{route.path}/{{path:path}}"
    path = getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    if "endpoint" in scope:
        # A mount matched (FastAPI's router records no route for one; the mount's prefix becomes the root path):
        # the single-page app's files, one series for all of them.
        return f"{scope.get('root_path', '')}/{{path:path}}"
    return UNMATCHED_ROUTE


_ACCESS_MESSAGE = '%s - "%s %s HTTP/%s" %d %.1fms'
# What logging.LogRecord.__init__ computes for every record, constant for every access line: the source file,
# module, function and level (it would split this file's path and look up the process name per request).
_TEMPLATE = logging.LogRecord(access_logger.name, logging.INFO, __file__, 0, _ACCESS_MESSAGE, None, None, "log_access")
_ACCESS_CONSTANTS = {
    name: value
    for name, value in vars(_TEMPLATE).items()
    if name not in {"args", "created", "msecs", "relativeCreated", "thread", "threadName", "process", "taskName"}
}
_LOGGING_STARTED = _TEMPLATE.created - _TEMPLATE.relativeCreated / 1000  # logging's start, for relativeCreated
# Paths that quote() would return unchanged (its always-safe characters and "/"): most of them.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~/-]*")


class AccessRecord(logging.LogRecord):
    """The access line's record: every attribute a LogRecord has, so any handler, filter or formatter takes it,
    built with only the per-request work (the time, the thread, the arguments) instead of LogRecord.__init__'s."""

    def __init__(self, args: tuple[object, ...], status: int, duration_ms: float) -> None:
        self.__dict__.update(_ACCESS_CONSTANTS)
        now = time.time_ns()
        self.created = now / 1e9
        self.msecs = (now % 1_000_000_000) // 1_000_000 + 0.0
        self.relativeCreated = (self.created - _LOGGING_STARTED) * 1000
        self.args = args
        self.thread = threading.get_ident()
        self.threadName = threading.current_thread().name
        self.process = os.getpid()
        self.taskName = None  # Python 3.12+ records name the asyncio task; the request id says more
        self.status = status
        self.duration_ms = duration_ms


def log_access(scope: Scope, status: int, seconds: float) -> None:
    """One line per request, formatted only if a handler takes it (%-style arguments, no f-string)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    query = scope.get("query_string")
    # scope["path"] is percent-decoded: quoted again, an encoded newline cannot start a forged line.
    path = scope["path"]
    if not _PLAIN_PATH.fullmatch(path):
        path = quote(path)
    if query:
        path = f"{path}?{query.decode('latin-1')}"
    milliseconds = seconds * 1000
    # Built and handed over directly: logger.info() would also walk the stack for the caller's file and line,
    # which an access line does not need, on every request.
    record = AccessRecord(
        (
            client[0] if client else "-",
            scope["method"],
            path,  # the callback's code and state are redacted by the formatter (ops/logs.py)
            scope.get("http_version", "1.1"),
            status,
            milliseconds,
        ),
        status,
        round(milliseconds, 3),
    )
    access_logger.handle(record)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, forwarded_allow_ips: str, metrics: Metrics, access_log: bool) -> None:
        self._app = ProxyHeadersMiddleware(app, trusted_hosts=forwarded_allow_ips)  # type: ignore[arg-type]
        self._trusted = self._app.trusted_hosts
        self._metrics = metrics
        self._access_log = access_log
        # Generated ids: a random prefix per process and a counter, 32 hex characters. Unique across workers and
        # restarts without a call to the OS's random source per request; an id is a label, not a secret.
        self._id_prefix = secrets.token_hex(8)
        self._ids = itertools.count()

    def _incoming_id(self, scope: Scope) -> str | None:
        client = scope.get("client")
        # Only a proxy we trust may name the request: anyone else could pick ids to confuse the logs.
        if client is None or client[0] not in self._trusted:
            return None
        found = [value for name, value in scope["headers"] if name == b"x-request-id"]
        if len(found) != 1:
            return None
        value = found[0].decode("latin-1")
        return value if _SAFE_REQUEST_ID.fullmatch(value) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)  # type: ignore[arg-type]
            return
        started = time.perf_counter()
        request_id = self._incoming_id(scope) or f"{self._id_prefix}{next(self._ids):016x}"
        # Not reset afterwards, on purpose: uvicorn runs each request in a task of its own, so the value dies with
        # it, and uvicorn's "Exception in ASGI application" line, written after this middleware has unwound, still
        # carries the request id.
        _current.set(RequestContext(request_id, scope))
        header = (b"x-request-id", request_id.encode("ascii"))
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # A new list (the app may hold on to its own), in the message, which is this response's alone.
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        self._metrics.request_started()
        try:
            await self._app(scope, receive, send_with_id)  # type: ignore[arg-type]
        finally:
            seconds = time.perf_counter() - started
            if self._metrics.per_request:  # else not even the route's template is worked out
                self._metrics.request_finished(route_template(scope), scope["method"], status, seconds)
            if self._access_log:
                log_access(scope, status, seconds)
