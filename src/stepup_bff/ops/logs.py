"""Logging set-up for the command line: one line per event, as text or as JSON, and no secrets in either.

Redaction happens twice. A filter on the records (`RedactSecrets`, on uvicorn's access logger and on httpx's
logger) protects those records whatever handler ends up writing them (tests, another logging set-up).
Then our formatters pass every finished line, traceback included, through `redact()`, so a secret of a known shape
is removed whichever logger, message or exception carried it.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from typing import Any, Literal

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


def redact(text: str) -> str:
    """`text` with every secret of a known shape replaced by [redacted]."""
    if not any(trigger in text for trigger in _TRIGGERS):
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


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s [%(request_id)s]: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a record that reached us without the RequestFields filter
            add_request_fields(record)
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and request_id, route, status, duration_ms, user_id
    where known; a traceback goes in `exception`. Newlines in a message are escaped, so a line is a record."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            add_request_fields(record)
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
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
                "class": "logging.StreamHandler",
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
