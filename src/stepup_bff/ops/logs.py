"""Logging set-up for the command line: one line per event, as text or as JSON, and no secrets in either.

Redaction happens twice. A filter on the records (`RedactSecrets`, on uvicorn's access logger and on httpx's
logger) protects those records whatever handler ends up writing them (tests, another logging set-up).
Then our formatters pass every finished line, traceback included, through `redact()`, so a secret of a known shape
is removed whichever logger, message or exception carried it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any, Literal

from .request_context import current

LogFormat = Literal["text", "json"]

_REDACTED = "[redacted]"
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # The OAuth callback's query carries the authorization code and state; keep the path, drop the query.
    (re.compile(r"(/auth/callback)\?[^\s\"']*"), r"\1?" + _REDACTED),
    # FusionAuth ids that are secrets travel in URL paths: /api/two-factor/send/{twoFactorId}, /api/jwt/refresh/{id}.
    (re.compile(r"(/api/two-factor/send/|/api/jwt/refresh/)[^/?\s\"']+"), r"\1" + _REDACTED),
    # Credentials in headers: Authorization: Bearer ..., Basic ...
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), r"\1 " + _REDACTED),
    # Our cookies (session, pending sign-ins) and FusionAuth's, as a Cookie/Set-Cookie header or a query parameter.
    (
        re.compile(r"\b((?:__Host-)?stepup_(?:session|login_\w+)|access_token|refresh_token|id_token)=[^;,&\s\"']+"),
        r"\1=" + _REDACTED,
    ),
    # Secret fields in JSON or form bodies and reprs: "twoFactorId": "...", refresh_token_id=...
    (
        re.compile(
            r"(\b(?:twoFactorId|refresh_token_id|refreshTokenId|client_secret|code_verifier|api_key)[\"']?\s*[:=]\s*"
            r"[\"']?)[^\"'\s,;&}]+"
        ),
        r"\1" + _REDACTED,
    ),
    # Native sign-in's Login API: the password in its body (a quoted string, spaces and all) and the opaque refresh
    # token in its answer (`refreshToken`; `refreshTokenId` is caught above). JSON or a Python repr.
    (
        re.compile(r"""(["'](?:password|refreshToken)["']\s*:\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""),
        r'\1"' + _REDACTED + '"',
    ),
    # Anything shaped like a JWT (header.payload.signature, base64url, header starting {"): access and id tokens.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), _REDACTED),
)


# Every pattern above needs one of these in the text. Most lines (every access line of an ordinary request) have
# none, and a handful of substring tests cost far less than running six regular expressions over each line.
_TRIGGERS = (
    "/auth/callback?",
    "/api/two-factor/send/",
    "/api/jwt/refresh/",
    "earer",
    "EARER",
    "asic",
    "ASIC",
    "stepup_session",
    "stepup_login_",
    "_token",
    "twoFactorId",
    "refreshToken",  # and refreshTokenId
    "password",
    "client_secret",
    "code_verifier",
    "api_key",
    "eyJ",
)


# All of them in one pass over the text, in C: a generator of seventeen `in` tests cost more than the formatting.
_TRIGGER = re.compile("|".join(re.escape(trigger) for trigger in _TRIGGERS))


def redact(text: str) -> str:
    """`text` with every secret of a known shape replaced by [redacted]."""
    if _TRIGGER.search(text) is None:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """uvicorn's access log prints the full request line, httpx's logger every request's full URL at INFO: redact the
    record's arguments before any handler sees them (callback query, secret path segments, credentials)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            # Numbers stay numbers, or "%d" would fail; everything else is what the message prints anyway.
            record.args = tuple(arg if isinstance(arg, int | float) else redact(str(arg)) for arg in record.args)
        return True


def protect_http_client_logs() -> None:
    """Attach the redaction to httpx's logger once; whoever configures logging later cannot undo it by accident."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(existing, RedactSecrets) for existing in httpx_logger.filters):
        httpx_logger.addFilter(RedactSecrets())


def add_request_fields(record: logging.LogRecord) -> None:
    context = current()
    if context is None:
        record.request_id, record.route, record.user_id = "-", None, None
    else:
        record.request_id, record.route, record.user_id = context.request_id, context.route, context.user_id


class RequestFields(logging.Filter):
    """Put the request's id, route and user (when known) on every record written during that request."""

    def filter(self, record: logging.LogRecord) -> bool:
        add_request_fields(record)
        return True


class _SecondStamp:
    """A timestamp's text up to the second, formatted once per second rather than once per line: an access line is
    written for every request. One (second, text) tuple, replaced whole, so threads sharing a formatter never see a
    second paired with another second's text."""

    def __init__(self, render: Callable[[int], str]) -> None:
        self._render = render
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, self._render(second))
        return cached[1]


class TextFormatter(logging.Formatter):
    FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s"

    def __init__(self) -> None:
        super().__init__(self.FORMAT)
        self._stamp = _SecondStamp(lambda second: time.strftime(self.default_time_format, self.converter(second)))

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        # As logging.Formatter writes it ("2026-11-30 12:00:00,123"), the seconds' part cached.
        return "%s,%03d" % (self._stamp(record.created), record.msecs)  # noqa: UP031 - logging.Formatter's own format

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a record that reached us without the RequestFields filter
            add_request_fields(record)
        if record.exc_info or record.exc_text or record.stack_info:
            return redact(super().format(record))
        # What logging.Formatter.format does for a record without a traceback (the same attributes set, the same
        # text: tests/test_logs.py), without the indirections it walks for every line: every request writes one.
        record.message = record.getMessage()
        record.asctime = self.formatTime(record)
        return redact(self.FORMAT % record.__dict__)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and request_id, route, status, duration_ms, user_id
    where known; a traceback goes in `exception`. Newlines in a message are escaped, so a line is a record."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _SecondStamp(lambda second: datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            add_request_fields(record)
        entry: dict[str, Any] = {
            # ISO 8601 in UTC with milliseconds: 2026-11-30T12:00:00.123Z
            "time": f"{self._stamp(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for field in ("request_id", "route", "status", "duration_ms", "user_id"):
            value = getattr(record, field, None)
            if value is not None and value != "-":
                entry[field] = value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"), default=str)


class AccessLogHandler(logging.StreamHandler[IO[str]]):
    """The access log's handler: a line per request, kept in memory and written to the stream together (one write
    and one flush, a system call or two for however many lines) at most `FLUSH_INTERVAL` seconds later by a thread of
    its own, or at once when `MAX_PENDING` characters are waiting. Its own buffer, not the stream's: under
    PYTHONUNBUFFERED=1 (our Dockerfile sets it, as most container images do, so that errors reach the log at once)
    the stream writes every line straight through, a system call per request. On a clean stop logging's shutdown
    flushes what is left; a process killed outright may lose the lines of its last fraction of a second, as nginx's
    `access_log ... buffer= flush=` may. Every other line (warnings, errors, tracebacks) goes through a plain
    StreamHandler and is written and flushed as it comes."""

    FLUSH_INTERVAL = 0.2  # seconds
    MAX_PENDING = 64 * 1024  # characters waiting at most (about 500 lines): memory stays bounded under any load

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._pending_size = 0
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._flusher: threading.Thread | None = None
        self._flusher_pid = 0

    def _write_pending(self) -> None:
        """Hand what is waiting to the stream, in one write. The caller holds the handler's lock."""
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._pending_size = 0
            self.stream.write(text)

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # logging.Handler always has its lock (createLock)
            self._dirty.clear()
            self._write_pending()
            super().flush()  # the lock is re-entrant

    def emit(self, record: logging.LogRecord) -> None:
        # logging.Handler.handle() holds the lock here: the list is never appended to while the flusher swaps it.
        try:
            line = self.format(record) + self.terminator
            self._pending.append(line)
            self._pending_size += len(line)
            if self._pending_size >= self.MAX_PENDING:
                self._write_pending()
        except Exception:  # logging's contract: a failing handler reports, it never raises into the caller
            self.handleError(record)
            return
        if not self._dirty.is_set():
            self._dirty.set()
            # One flusher per process: a handler inherited through fork() has its parent's thread object only.
            if self._flusher is None or self._flusher_pid != os.getpid():
                self._flusher_pid = os.getpid()
                self._flusher = threading.Thread(target=self._flush_soon, name="access-log-flush", daemon=True)
                self._flusher.start()

    def _flush_soon(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait()
            if self._stopping.wait(self.FLUSH_INTERVAL):
                break
            try:
                self.flush()
            except (OSError, ValueError):  # the stream went away (closed, a broken pipe): nothing left to do
                break

    def close(self) -> None:
        # logging.shutdown() flushes every handler before it closes them; a handler closed on its own (replaced by a
        # new logging set-up) still hands over what it holds. The thread is told to stop.
        with self.lock:  # type: ignore[union-attr]
            with contextlib.suppress(OSError, ValueError):
                self._write_pending()
        self._stopping.set()
        self._dirty.set()
        super().close()


def configure_logging(level: str, log_format: LogFormat = "text") -> dict[str, Any]:
    """A logging config for uvicorn's `log_config=`, so its loggers and ours share one format."""
    level = level.upper()
    formatter = {"()": JsonFormatter if log_format == "json" else TextFormatter}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}, "request_fields": {"()": RequestFields}},
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_fields"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "()": AccessLogHandler,
                "formatter": "default",
                "filters": ["request_fields"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["access"], "filters": ["redact"], "level": level, "propagate": False},
            # Our own access log (ops/request_context.py): stdout, like uvicorn's.
            "stepup_bff.access": {"handlers": ["access"], "level": level, "propagate": False},
            "stepup_bff": {"handlers": ["default"], "level": level, "propagate": False},
            "fusionauth_dev": {"handlers": ["default"], "level": level, "propagate": False},
            # One line per outgoing request is noise at info; our own fusionauth logger says what matters. At debug
            # they are wanted, with the secret path segments removed (RedactSecrets).
            "httpx": {"handlers": ["default"], "level": "INFO" if level == "DEBUG" else "WARNING", "propagate": False},
            "httpcore": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
