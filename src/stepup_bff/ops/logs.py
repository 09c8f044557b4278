"""Logging set-up for the command line: one line per event, and no secrets in the access log."""

from __future__ import annotations

import logging
import re
from typing import Any

# The OAuth callback's query carries the authorization code and state; keep the path, drop the query.
_CALLBACK_QUERY = re.compile(r"^(/auth/callback)\?.*$")


class RedactCallbackQuery(logging.Filter):
    """uvicorn's access log prints the full request line; strip the callback's query string from it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], _CALLBACK_QUERY.sub(r"\1?[redacted]", args[2]), *args[3:])
        return True


# FusionAuth ids that are secrets travel in URL paths: /api/two-factor/send/{twoFactorId}, /api/jwt/refresh/{id}.
_SECRET_PATH = re.compile(r"(/api/two-factor/send/|/api/jwt/refresh/)[^/?\s\"]+")


class RedactSecretPaths(logging.Filter):
    """httpx logs every request's full URL at INFO; replace the secret path segments before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        args: Any = record.args
        if isinstance(args, tuple):
            record.args = tuple(_SECRET_PATH.sub(r"\1[redacted]", str(a)) if "/api/" in str(a) else a for a in args)
        return True


def protect_http_client_logs() -> None:
    """Attach the redaction to httpx's logger once; whoever configures logging later cannot undo it by accident."""
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(existing, RedactSecretPaths) for existing in httpx_logger.filters):
        httpx_logger.addFilter(RedactSecretPaths())


def configure_logging(level: str) -> dict[str, Any]:
    """A logging config for uvicorn's `log_config=`, so its loggers and ours share one format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact_callback": {"()": RedactCallbackQuery}},
        "formatters": {
            "default": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
        },
        "handlers": {
            "default": {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"},
            "access": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact_callback"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"handlers": ["access"], "level": level.upper(), "propagate": False},
            "stepup_bff": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            "fusionauth_dev": {"handlers": ["default"], "level": level.upper(), "propagate": False},
            # One line per outgoing request is noise at info; our own fusionauth logger says what matters.
            "httpx": {"handlers": ["default"], "level": "WARNING", "propagate": False},
            "httpcore": {"handlers": ["default"], "level": "WARNING", "propagate": False},
        },
    }
