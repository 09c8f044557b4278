"""The access log never records the OAuth callback's code and state."""

from __future__ import annotations

import logging

from stepup_bff.ops.logs import RedactCallbackQuery


def _access_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", path, "1.1", 303),
        None,
    )


def test_callback_query_is_redacted() -> None:
    record = _access_record("/auth/callback?code=SECRETCODE&state=SECRETSTATE")
    assert RedactCallbackQuery().filter(record)
    message = record.getMessage()
    assert "SECRETCODE" not in message and "SECRETSTATE" not in message
    assert "/auth/callback?[redacted]" in message


def test_other_paths_are_untouched() -> None:
    record = _access_record("/auth/login?return_to=/x")
    RedactCallbackQuery().filter(record)
    assert "/auth/login?return_to=/x" in record.getMessage()


def test_httpx_request_lines_never_carry_two_factor_ids() -> None:
    from stepup_bff.ops.logs import RedactSecretPaths

    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s %d %s"',
        ("POST", "http://fa:9011/api/two-factor/send/TFID-secret123", "HTTP/1.1", 200, "OK"),
        None,
    )
    RedactSecretPaths().filter(record)
    assert "TFID-secret123" not in record.getMessage()
    assert "/api/two-factor/send/[redacted]" in record.getMessage()
