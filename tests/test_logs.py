"""Logs: text or JSON lines with the request id, and no secret in any of them, whichever path a line takes
(access log, httpx's request log, our own loggers, uvicorn's exception log)."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, make_settings, sign_in, start_login
from stepup_bff.app import create_app
from stepup_bff.ops.logs import LogFormat, RedactSecrets, TextFormatter, configure_logging, redact
from stepup_bff.ops.request_context import AccessRecord
from support.fake_fusionauth import USER_ID, TokenFactory
from support.live_server import serve
from support.two_factor import SMS, VALID_CODE, FakeTwoFactor

FORMATS = ["text", "json"]


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
    assert RedactSecrets().filter(record)
    message = record.getMessage()
    assert "SECRETCODE" not in message and "SECRETSTATE" not in message
    assert "/auth/callback?[redacted]" in message


def test_other_paths_are_untouched() -> None:
    record = _access_record("/auth/login?return_to=/x")
    RedactSecrets().filter(record)
    assert "/auth/login?return_to=/x" in record.getMessage()


def test_httpx_request_lines_never_carry_two_factor_ids() -> None:
    record = logging.LogRecord(
        "httpx",
        logging.INFO,
        __file__,
        1,
        'HTTP Request: %s %s "%s %d %s"',
        ("POST", httpx.URL("http://fa:9011/api/two-factor/send/TFID-secret123"), "HTTP/1.1", 200, "OK"),
        None,
    )
    RedactSecrets().filter(record)
    assert "TFID-secret123" not in record.getMessage()
    assert "/api/two-factor/send/[redacted]" in record.getMessage()


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl", "Authorization: Bearer [redacted]"),
        ("Cookie: stepup_session=abc.def.ghi; other=1", "Cookie: stepup_session=[redacted]; other=1"),
        (
            "Set-Cookie: __Host-stepup_login_0123abcd=zzz; Path=/",
            "Set-Cookie: __Host-stepup_login_0123abcd=[redacted]; Path=/",
        ),
        ('{"twoFactorId": "TFID-1", "code": "123456"}', '{"twoFactorId": "[redacted]", "code": "123456"}'),
        ("DELETE /api/jwt/refresh/5a7f9c1e-rt HTTP/1.1", "DELETE /api/jwt/refresh/[redacted] HTTP/1.1"),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.sig-nature", "token [redacted]"),
        ("GET /auth/login?return_to=/telegrams 302", "GET /auth/login?return_to=/telegrams 302"),
        ("step-up wrong code: user=u attempt=1/5 status=421", "step-up wrong code: user=u attempt=1/5 status=421"),
    ],
)
def test_redact(text: str, kept: str) -> None:
    assert redact(text) == kept


def _traceback() -> Any:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        return sys.exc_info()


@pytest.mark.parametrize(
    "record",
    [
        logging.LogRecord("stepup_bff.x", logging.INFO, __file__, 1, "plain %s and %d", ("words", 7), None),
        logging.LogRecord("stepup_bff.x", logging.WARNING, __file__, 1, "no arguments, 100% literal", None, None),
        logging.LogRecord("stepup_bff.x", logging.INFO, __file__, 1, "a %(name)s mapping", ({"name": "n"},), None),
        logging.LogRecord("stepup_bff.x", logging.INFO, __file__, 1, "token %s", ("eyJhbGciOi.eyJzdWIiOi.c2ln",), None),
        logging.LogRecord("stepup_bff.x", logging.ERROR, __file__, 1, "failed", None, _traceback()),
        logging.LogRecord("stepup_bff.x", logging.INFO, __file__, 1, "where", None, None, sinfo="Stack (most recent)"),
        AccessRecord(("127.0.0.1", "GET", "/api/session", "1.1", 200, 1.25), 200, 1.25),
    ],
    ids=["args", "literal", "mapping", "secret", "traceback", "stack", "access"],
)
def test_text_lines_are_what_logging_formatter_writes_then_redacted(record: logging.LogRecord) -> None:
    """TextFormatter writes a plain record without logging.Formatter's indirections: the same text all the same."""
    ours = TextFormatter().format(record)
    expected = redact(logging.Formatter(TextFormatter.FORMAT).format(record))
    assert ours == expected
    assert record.message == record.getMessage() and ours.startswith(record.asctime)  # as logging.Formatter leaves it


# -- the configured handlers, end to end ------------------------------------------------------------------------


@pytest.fixture
def configured_logging(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[str, LogFormat], None]]:
    """Apply the CLI's logging configuration (writing to pytest's captured stdout/stderr), then put back what the
    test run had, so later tests' caplog still sees our loggers."""
    names = list(configure_logging("info")["loggers"])
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.level, list(logger.handlers), logger.propagate, list(logger.filters), logger.disabled)

    def apply(level: str, log_format: LogFormat) -> None:
        logging.config.dictConfig(configure_logging(level, log_format))

    yield apply
    for name, (level, handlers, propagate, filters, disabled) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.filters[:] = filters
        logger.disabled = disabled


def lines(capsys: pytest.CaptureFixture[str]) -> tuple[list[str], list[str]]:
    for handler in logging.getLogger("stepup_bff.access").handlers:
        handler.flush()  # the access log hands its lines over together, a moment later (ops/logs.AccessLogHandler)
    captured = capsys.readouterr()
    return captured.out.splitlines(), captured.err.splitlines()


def test_json_lines_parse_and_carry_the_request_id(
    configured_logging: Callable[[str, LogFormat], None],
    capsys: pytest.CaptureFixture[str],
    app_factory: Any,
    settings: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
) -> None:
    configured_logging("info", "json")
    client: TestClient = app_factory(settings)
    callback = sign_in(client, fusionauth, tokens)
    session = client.get("/api/session")
    out, err = lines(capsys)
    records = [json.loads(line) for line in out + err]  # every line is one JSON object
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
    access = {record["request_id"]: record for record in records if record["logger"] == "stepup_bff.access"}
    line = access[session.headers["x-request-id"]]
    assert line["route"] == "/api/session" and line["status"] == 200 and line["user_id"] == USER_ID
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["time"].endswith("Z") and line["level"] == "INFO"
    assert '"GET /api/session HTTP/1.1" 200' in line["message"]
    # Our own line written during the callback carries that request's id and route.
    (signed_in,) = [record for record in records if record["message"].startswith("signed in:")]
    assert signed_in["request_id"] == callback.headers["x-request-id"]
    assert signed_in["route"] == "/auth/callback" and signed_in["logger"] == "stepup_bff.api.auth"
    assert access[callback.headers["x-request-id"]]["status"] == 303


def test_text_lines_carry_the_request_id(
    configured_logging: Callable[[str, LogFormat], None], capsys: pytest.CaptureFixture[str], client: TestClient
) -> None:
    configured_logging("info", "text")
    response = client.get("/healthz")
    out, _ = lines(capsys)
    (access,) = [line for line in out if "/healthz" in line]
    assert f"stepup_bff.access [{response.headers['x-request-id']}]:" in access
    assert '"GET /healthz HTTP/1.1" 200' in access and access.endswith("ms")


def test_an_encoded_newline_cannot_forge_an_access_line(
    configured_logging: Callable[[str, LogFormat], None], capsys: pytest.CaptureFixture[str], client: TestClient
) -> None:
    configured_logging("info", "text")
    client.get("/x%0A2026-01-01 00:00:00,000 INFO    stepup_bff.api.auth [-]: signed in: user=admin")
    out, _ = lines(capsys)
    assert len(out) == 1 and "/x%0A2026-01-01" in out[0]


def test_the_access_log_can_be_turned_off(
    configured_logging: Callable[[str, LogFormat], None],
    capsys: pytest.CaptureFixture[str],
    app_factory: Any,
    tmp_path: Path,
    fusionauth: respx.MockRouter,
) -> None:
    configured_logging("info", "text")
    client: TestClient = app_factory(make_settings(tmp_path, access_log=False))
    client.get("/healthz")
    client.get("/nope")
    out, _ = lines(capsys)
    assert out == []


@pytest.mark.parametrize("log_format", FORMATS)
def test_no_secret_reaches_any_log_line(
    configured_logging: Callable[[str, LogFormat], None],
    capsys: pytest.CaptureFixture[str],
    app_factory: Any,
    settings: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    log_format: LogFormat,
) -> None:
    configured_logging("debug", log_format)  # debug: httpx's request lines are written too
    client: TestClient = app_factory(settings)
    two_factor = FakeTwoFactor(fusionauth, methods=[SMS])
    login = start_login(client)
    token_response = tokens.token_response(nonce=login.nonce)
    fusionauth["token"].respond(json=token_response)
    callback = client.get("/auth/callback", params={"code": "CALLBACK-CODE-s3cr3t", "state": login.state})
    assert callback.status_code == 303
    session_cookie = client.cookies["stepup_session"]
    assert client.post("/api/step-up/start", json={}, headers=JSON_HEADERS).status_code == 200
    assert client.post("/api/step-up/send", json={"method_id": "TEXT"}, headers=JSON_HEADERS).status_code == 200
    assert client.post("/api/step-up/finish", json={"code": VALID_CODE}, headers=JSON_HEADERS).status_code == 200
    # Secrets a careless client puts where they get logged: the query string, and the callback's error parameter.
    bearer = token_response["access_token"]
    client.get("/api/session", params={"access_token": bearer, "stepup_session": session_cookie})
    client.get("/auth/callback", params={"error": f"Bearer {bearer}", "state": "STATE-s3cr3t"})
    assert client.post("/auth/logout", headers=JSON_HEADERS).status_code == 200
    # Our own loggers, with an exception attached.
    try:
        raise RuntimeError(f"refresh_token_id={token_response['refresh_token_id']} Authorization: Bearer {bearer}")
    except RuntimeError:
        logging.getLogger("stepup_bff.test").exception("Cookie: stepup_session=%s", session_cookie)

    out, err = lines(capsys)
    logged = "\n".join(out + err)
    two_factor_id = next(iter(two_factor.sent))[0]
    secrets = [
        "CALLBACK-CODE-s3cr3t",
        login.state,
        "STATE-s3cr3t",
        two_factor_id,
        token_response["refresh_token_id"],
        token_response["refresh_token"],
        token_response["access_token"],
        token_response["id_token"],
        session_cookie,
        *two_factor.secrets,
    ]
    for secret in secrets:
        assert secret not in logged
    # ... and the lines that would have carried them are there.
    assert "/auth/callback?[redacted]" in logged
    assert "/api/two-factor/send/[redacted]" in logged  # httpx's line for the send
    assert "/api/jwt/refresh/[redacted]" in logged  # httpx's line for the revocation
    assert "RuntimeError: refresh_token_id=[redacted] Authorization: Bearer [redacted]" in logged.replace("\\n", "\n")
    if log_format == "json":
        assert all(json.loads(line) for line in out + err)


@pytest.mark.live
@pytest.mark.parametrize("log_format", FORMATS)
def test_uvicorn_exception_lines_are_redacted_and_carry_the_request_id(
    configured_logging: Callable[[str, LogFormat], None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    log_format: LogFormat,
) -> None:
    configured_logging("info", log_format)
    app = create_app(make_settings(tmp_path))
    secret = "TFID-live-s3cr3t"

    async def broken() -> None:
        raise RuntimeError(f"POST /api/two-factor/send/{secret} failed; Cookie: stepup_session={secret}")

    # Ahead of the single-page app's catch-all mount: a route with a bug that puts secrets in its exception.
    app.router.routes.insert(0, APIRoute("/broken", broken))
    with serve(app) as live:
        response = httpx.get(f"{live.url}/broken", timeout=5)
    assert response.status_code == 500
    out, err = lines(capsys)
    logged = "\n".join(out + err)
    assert "Exception in ASGI application" in logged
    assert secret not in logged
    (line,) = [line for line in err if "Exception in ASGI application" in line]
    if log_format == "json":
        record = json.loads(line)
        assert record["request_id"] == response.headers["x-request-id"]
        assert "RuntimeError: POST /api/two-factor/send/[redacted]" in record["exception"]
    else:
        assert f"[{response.headers['x-request-id']}]" in line
