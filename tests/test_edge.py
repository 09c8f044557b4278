"""The edge rules (README, "Errors"): what is refused before routing, any dependency or any handler runs, and
proof that a refused request did nothing: the store is byte for byte the same, FusionAuth was not called, and no
cookie was set or cleared. One section per point of issue 18."""

from __future__ import annotations

import contextlib
import logging
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi import Request
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, PUBLIC_URL, FakeClock, make_settings, start_login
from stepup_bff.app import create_app
from stepup_bff.settings import Settings
from support.asgi import call
from support.fake_fusionauth import FA_PUBLIC_URL, TokenFactory
from support.live_server import serve
from support.step_up import confirm_transaction
from support.two_factor import VALID_CODE, FakeTwoFactor

LIMIT = 16 * 1024
JSON = {**JSON_HEADERS, "Content-Type": "application/json"}
TELEGRAM = {"recipient": "Bob", "message": "Happy birthday, sung by a baritone"}
# Routes that take no input, a route whose input is all optional (no body, {}, or exactly its fields), and routes
# with a body (and a body they would act on).
BODYLESS = ("/api/step-up/cancel", "/auth/logout")
OPTIONAL_BODY = ("/api/step-up/start",)
WITH_BODY: dict[str, dict[str, str]] = {
    "/api/step-up/send": {"method_id": "MAIL"},
    "/api/step-up/finish": {"code": VALID_CODE},
    "/api/telegrams": TELEGRAM,
}
EVERY_POST = (*BODYLESS, *OPTIONAL_BODY, *WITH_BODY)
# Valid JSON, `{}` padded with spaces: too big by size alone, whatever its content.
OVERSIZED = b"{" + b" " * (LIMIT - 1) + b"}"


@dataclass
class Armed:
    """Signed in, stepped up, and a challenge in progress: every POST route would change something if it ran."""

    client: TestClient
    fusionauth: respx.MockRouter
    db: Path

    def world(self) -> tuple[dict[str, list[Any]], int]:
        """Every row of every table in the store, and how many calls FusionAuth has had."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            # Table names come from SQLite's own catalogue, not from input.
            rows = {table: sorted(db.execute(f'SELECT * FROM "{table}"'), key=repr) for table in tables}  # noqa: S608
        return rows, len(self.fusionauth.calls)

    def assert_untouched(self, before: tuple[dict[str, list[Any]], int], response: httpx.Response) -> None:
        after = self.world()
        assert after[1] == before[1], "FusionAuth was called for a refused request"
        assert after[0] == before[0], "the store changed for a refused request"
        assert "set-cookie" not in response.headers, response.headers.get_list("set-cookie")


def post(client: TestClient, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers=JSON_HEADERS)


@pytest.fixture
def armed(signed_in: TestClient, fusionauth: respx.MockRouter, tmp_path: Path) -> Armed:
    """Stepped up for TELEGRAM (its confirmation not yet used), and another challenge in progress."""
    FakeTwoFactor(fusionauth)
    assert confirm_transaction(signed_in, post(signed_in, "/api/telegrams", TELEGRAM)).status_code == 200
    assert post(signed_in, "/api/step-up/start").status_code == 200
    return Armed(signed_in, fusionauth, tmp_path / "store.sqlite3")


def assert_error(response: httpx.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["error_description"], body


# -- 1. a body over the limit (Content-Length) is refused before any handler or dependency runs ------------------


@pytest.mark.parametrize("path", EVERY_POST)
def test_a_body_over_the_limit_is_refused_before_anything_runs(armed: Armed, path: str) -> None:
    before = armed.world()
    response = armed.client.post(path, content=OVERSIZED, headers=JSON)
    assert_error(response, 413, "request_too_large")
    armed.assert_untouched(before, response)
    assert armed.client.get("/api/session").json()["authenticated"] is True


def test_the_limit_is_16_kib_exactly(signed_in: TestClient) -> None:
    assert_error(signed_in.post("/auth/logout", content=OVERSIZED, headers=JSON), 413, "request_too_large")
    exactly = b"{" + b" " * (LIMIT - 2) + b"}"
    response = signed_in.post("/auth/logout", content=exactly, headers=JSON)
    assert response.status_code == 200, response.text
    assert signed_in.get("/api/session").json()["authenticated"] is False


def test_the_limit_holds_where_no_route_is(client: TestClient) -> None:
    assert_error(client.post("/no-such-route", content=OVERSIZED, headers=JSON), 413, "request_too_large")


# -- 2. chunked bodies (no Content-Length) are counted as they stream ---------------------------------------------


@pytest.mark.parametrize("path", EVERY_POST)
def test_a_chunked_body_over_the_limit_is_refused_before_anything_runs(armed: Armed, path: str) -> None:
    before = armed.world()
    chunks = iter([OVERSIZED[:100], OVERSIZED[100:]])  # an iterator: httpx sends Transfer-Encoding: chunked
    response = armed.client.post(path, content=chunks, headers=JSON)
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "request_too_large")
    armed.assert_untouched(before, response)


def test_a_streamed_body_is_cut_off_at_the_limit(armed: Armed) -> None:
    """32 MiB in 64 KiB pieces, no Content-Length: reading stops at the first piece past 16 KiB."""
    before = armed.world()
    pieces = [b"{"] + [b" " * 65536] * 512 + [b"}"]
    headers = [("x-csrf", "1"), ("origin", PUBLIC_URL), ("content-type", "application/json")]
    exchange = call(armed.client, "POST", "/auth/logout", headers=headers, body=pieces)
    assert exchange.status == 413 and exchange.json()["error"] == "request_too_large"
    assert exchange.pulled <= LIMIT + 65536 + 1, f"pulled {exchange.pulled} bytes"
    assert armed.world() == before and exchange.header("set-cookie") is None


@pytest.mark.parametrize(("path", "body"), WITH_BODY.items())
def test_a_chunked_body_within_the_limit_is_accepted(armed: Armed, path: str, body: dict[str, str]) -> None:
    content = httpx.Request("POST", "/", json=body).content
    response = armed.client.post(path, content=iter([content[:5], content[5:]]), headers=JSON)
    assert response.status_code in (200, 201), response.text


# -- 3. body-less routes take an empty body or `{}`, nothing else ------------------------------------------------

MALFORMED = [
    b'{"a":',
    b"[1,2",
    b"\xff\xfe{}",  # not UTF-8
    b"\xef\xbb\xbf{}",  # a byte-order mark: JSON has none (RFC 8259 section 8.1)
    b"NaN",
    b'{"a": NaN}',
    b"[]",
    b"null",
    b"0",
    b'"{}"',
    b'{"a": 1}',
    b'{"": null}',
    b"{}{}",
    b"{} []",
]


@pytest.mark.parametrize("path", (*BODYLESS, *OPTIONAL_BODY))
def test_body_less_routes_refuse_any_other_body(armed: Armed, path: str) -> None:
    for body in MALFORMED:
        before = armed.world()
        response = armed.client.post(path, content=body, headers=JSON)
        assert response.status_code == 400, (body, response.text)
        assert_error(response, 400, "invalid_request")
        armed.assert_untouched(before, response)


@pytest.mark.parametrize("body", [b"", b"{}", b" {\n\t} \r\n"])
@pytest.mark.parametrize("path", (*BODYLESS, *OPTIONAL_BODY))
def test_body_less_routes_accept_nothing_or_an_empty_object(armed: Armed, path: str, body: bytes) -> None:
    headers = JSON if body else JSON_HEADERS
    response = armed.client.post(path, content=body, headers=headers)
    assert response.status_code in (200, 204), response.text


TRANSACTION_ID = "tx_" + "A" * 22
OPTIONAL_MALFORMED = [
    b'{"transaction_id": 5}',
    b'{"transaction_id": "not-an-id"}',
    b'{"transaction_id": "' + TRANSACTION_ID.encode() + b'", "extra": 1}',
    # A repeated key: which of the two counts is where two parsers disagree.
    b'{"transaction_id": "' + TRANSACTION_ID.encode() + b'", "transaction_id": "tx_' + b"B" * 22 + b'"}',
    b'{"transaction_id": "' + TRANSACTION_ID.encode() + b'", "a": NaN}',
    b'{"transaction_id": null, "userId": "someone"}',
]


@pytest.mark.parametrize("body", OPTIONAL_MALFORMED)
def test_start_takes_only_a_transaction_id(armed: Armed, body: bytes) -> None:
    """POST /api/step-up/start: nothing, `{}`, or `{"transaction_id": "tx_..."}`, strictly; refused before anything."""
    before = armed.world()
    response = armed.client.post("/api/step-up/start", content=body, headers=JSON)
    assert_error(response, 400, "invalid_request")
    assert "transaction_id" in response.json()["error_description"]
    armed.assert_untouched(before, response)


def test_start_for_a_transaction_that_is_not_pending_is_410(armed: Armed) -> None:
    response = armed.client.post("/api/step-up/start", json={"transaction_id": TRANSACTION_ID}, headers=JSON)
    assert_error(response, 410, "transaction_expired")
    assert post(armed.client, "/api/step-up/start", {"transaction_id": None}).status_code == 200  # = unbound


def test_what_the_spa_sends_to_body_less_routes_is_accepted(armed: Armed) -> None:
    """frontend/api.js posts `JSON.stringify({})` with Content-Type: application/json to start, cancel, logout."""
    for path in (*OPTIONAL_BODY, *BODYLESS):  # logout last: it ends the session
        response = armed.client.post(path, content=b"{}", headers={"X-CSRF": "1", "Content-Type": "application/json"})
        assert response.status_code in (200, 204), (path, response.text)


# -- 4. Sec-Fetch-Site: only same-origin ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["none", "cross-site", "same-site", "same-origin, cross-site", ""])
def test_sec_fetch_site_other_than_same_origin_is_refused(armed: Armed, value: str) -> None:
    before = armed.world()
    response = armed.client.post("/auth/logout", content=b"{}", headers={**JSON, "Sec-Fetch-Site": value})
    assert_error(response, 403, "csrf_rejected")
    armed.assert_untouched(before, response)


# -- 5. a header the CSRF and body rules read may appear once ---------------------------------------------------

BASE = [("X-CSRF", "1"), ("Origin", PUBLIC_URL), ("Content-Type", "application/json")]
REPEATED = {
    "origin": [("Origin", PUBLIC_URL), ("Origin", "https://evil.example")],
    "sec-fetch-site": [("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Site", "cross-site")],
    "x-csrf": [("X-CSRF", "1"), ("X-CSRF", "1")],
    "content-type": [("Content-Type", "application/json"), ("Content-Type", "text/plain")],
    "content-length": [("Content-Length", "2"), ("Content-Length", "2")],
    "host": [("Host", "localhost:9000")],  # call() sends one already
    "idempotency-key": [("Idempotency-Key", "k-1"), ("Idempotency-Key", "k-2")],
}


@pytest.mark.parametrize("name", REPEATED)
@pytest.mark.parametrize("path", ["/auth/logout", "/api/step-up/start"])
def test_a_repeated_single_valued_header_is_refused(armed: Armed, name: str, path: str) -> None:
    before = armed.world()
    headers = [(key, value) for key, value in BASE if key.lower() != name] + REPEATED[name]
    exchange = call(armed.client, "POST", path, headers=headers, body=[b"{}"])
    assert exchange.status == 400, exchange.body
    assert exchange.json()["error"] == "invalid_request"
    assert name in exchange.json()["error_description"].lower()
    assert exchange.header("set-cookie") is None
    assert armed.world() == before


def test_a_repeated_header_is_refused_over_an_http_client_too(armed: Armed) -> None:
    before = armed.world()
    headers = [("X-CSRF", "1"), ("Origin", PUBLIC_URL), ("Origin", "https://evil.example")]
    response = armed.client.post("/auth/logout", headers=headers)
    assert_error(response, 400, "invalid_request")
    armed.assert_untouched(before, response)


def test_headers_that_may_repeat_still_work(signed_in: TestClient) -> None:
    """Cookie may come in several lines (HTTP/2 splits it), Accept is a list: neither is an edge concern."""
    headers = [*BASE, ("Accept", "application/json"), ("Accept", "*/*")]
    exchange = call(signed_in, "POST", "/auth/logout", headers=headers, body=[b"{}"])
    assert exchange.status == 200, exchange.body


# -- 6. a query parameter may appear once (RFC 6749 section 3.1 for the OAuth callback) --------------------------


@pytest.mark.parametrize(
    "query",
    [
        "code=junk&code=auth-code&state={state}",
        "code=auth-code&code=auth-code&state={state}",
        "code=auth-code&state={state}&state={state}",
        "code=auth-code&state=other&state={state}",
        "error=access_denied&error=access_denied&state={state}",
        "code=auth-code&state={state}&iss={issuer}&iss=https%3A%2F%2Fevil.example",
        "code=auth-code&state={state}&error_description=a&error_description=b",
        "code=auth-code&st%61te={state}&state={state}",  # the same name, percent-encoded
    ],
)
def test_a_repeated_oauth_parameter_is_refused(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, query: str
) -> None:
    login = start_login(client)
    fusionauth["token"].respond(json=tokens.token_response(nonce=login.nonce))

    response = client.get("/auth/callback?" + query.format(state=login.state, issuer=FA_PUBLIC_URL))

    assert response.status_code == 303
    assert response.headers["location"] == "/?error=invalid_request"
    assert not fusionauth["token"].called
    assert "set-cookie" not in response.headers  # neither a session nor the end of the pending sign-in
    assert client.get("/api/session").json()["authenticated"] is False
    # Nothing was consumed: the pending sign-in this answer named still completes with a well-formed answer.
    done = client.get("/auth/callback", params={"code": "auth-code", "state": login.state})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert client.get("/api/session").json()["authenticated"] is True


@pytest.mark.parametrize(
    ("path", "query"),
    [("/auth/login", "return_to=/a&return_to=/b"), ("/api/session", "x=1&x=2"), ("/", "v=1&v=2")],
)
def test_a_repeated_query_parameter_is_refused_on_every_route(client: TestClient, path: str, query: str) -> None:
    response = client.get(f"{path}?{query}")
    if path.startswith("/auth/"):
        assert response.status_code == 303 and response.headers["location"] == "/?error=invalid_request"
        assert "set-cookie" not in response.headers
    else:
        assert_error(response, 400, "invalid_request")


# -- 7. HEAD wherever GET, and 405 with Allow -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/api/session", "/api/telegrams", "/", "/app.js", "/api/openapi.json"])
def test_head_answers_like_get_without_a_body(signed_in: TestClient, path: str) -> None:
    get = call(signed_in, "GET", path)
    head = call(signed_in, "HEAD", path)
    assert get.status == 200 and get.body
    assert head.status == 200
    assert head.body == b""
    for name in ("content-type", "content-length", "cache-control", "content-security-policy"):
        assert head.header(name) == get.header(name), name
    assert get.header("content-length") == str(len(get.body))


def test_head_is_refused_like_get(client: TestClient) -> None:
    head = call(client, "HEAD", "/api/telegrams")
    assert head.status == 401 and head.body == b""
    assert call(client, "HEAD", "/nothing-here").status == 404


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/session", "GET, HEAD"),
        ("DELETE", "/healthz", "GET, HEAD"),
        ("OPTIONS", "/api/session", "GET, HEAD"),
        ("GET", "/api/step-up/start", "POST"),
        ("HEAD", "/api/step-up/cancel", "POST"),
        ("PATCH", "/api/step-up/finish", "POST"),
        ("PUT", "/api/telegrams", "GET, HEAD, POST"),
        ("POST", "/app.js", "GET, HEAD"),
        ("PUT", "/", "GET, HEAD"),
    ],
)
def test_method_not_allowed_says_what_is(client: TestClient, method: str, path: str, allow: str) -> None:
    response = client.request(method, path, headers=JSON_HEADERS)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json()["error"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path", ["/../pyproject.toml", "/../README.md", "/./../src/stepup_bff/settings.py", "/app.js/../../pyproject.toml"]
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_nothing_outside_the_spa_directory_is_served(client: TestClient, method: str, path: str) -> None:
    """The SPA's files are served by FastAPI's `app.frontend` now (below every route): still only from frontend/.
    At the ASGI level, so that no client library tidies the dots away first."""
    exchange = call(client, method, path)
    assert exchange.status == 404
    assert b"[project]" not in exchange.body and b"stepup-bff" not in exchange.body


def test_openapi_lists_no_head_operations(client: TestClient) -> None:
    paths = client.get("/api/openapi.json").json()["paths"]
    assert paths and all(set(operations) <= {"get", "post", "delete"} for operations in paths.values()), paths
    assert "head" not in str({path: list(operations) for path, operations in paths.items()})


# -- media types --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", "application/jsonx", ""],
)
def test_a_body_must_be_json(armed: Armed, content_type: str) -> None:
    before = armed.world()
    response = armed.client.post("/auth/logout", content=b"{}", headers={**JSON_HEADERS, "Content-Type": content_type})
    assert_error(response, 415, "unsupported_media_type")
    armed.assert_untouched(before, response)


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON; charset=UTF-8", "application/json;"])
def test_json_with_or_without_utf8_charset_is_accepted(signed_in: TestClient, content_type: str) -> None:
    response = signed_in.post("/auth/logout", content=b"{}", headers={**JSON_HEADERS, "Content-Type": content_type})
    assert response.status_code == 200, response.text


# -- the rules are the app's, not the routes': a route added later gets them all -----------------------------------


def test_a_new_route_gets_every_edge_rule(settings: Settings, fusionauth: respx.MockRouter, clock: FakeClock) -> None:
    app = create_app(settings, clock=clock)
    reached: list[bytes] = []

    @app.post("/api/new-thing")
    async def new_thing(request: Request) -> dict[str, bool]:  # a route that acts on anything that reaches it
        reached.append(await request.body())
        return {"done": True}

    with TestClient(app, base_url=PUBLIC_URL) as client:
        refused = [
            client.post("/api/new-thing", content=b"{}", headers={"Content-Type": "application/json"}),  # no X-CSRF
            client.post("/api/new-thing", content=b"{}", headers={**JSON, "Sec-Fetch-Site": "none"}),
            client.post("/api/new-thing", content=OVERSIZED, headers=JSON),
            client.post("/api/new-thing", content=iter([OVERSIZED]), headers=JSON),
            client.post("/api/new-thing", content=b"a=b", headers={**JSON_HEADERS, "Content-Type": "text/plain"}),
            client.post("/api/new-thing?x=1&x=2", content=b"{}", headers=JSON),
            client.post("/api/new-thing", content=b"{}", headers=[*BASE, ("Origin", "https://evil.example")]),
        ]
        assert [r.status_code for r in refused] == [403, 403, 413, 413, 415, 400, 400]
        assert reached == []
        assert client.post("/api/new-thing", content=b"{}", headers=JSON).json() == {"done": True}


def test_refusals_cannot_forge_log_lines(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    client.post(
        "/x%0a2026-01-01 00:00:00,000 INFO    stepup_bff: signed in", headers={"Origin": "https://evil.example"}
    )
    assert any(record.getMessage().startswith("refused POST /x?2026") for record in caplog.records)
    assert all("\n" not in record.getMessage() for record in caplog.records)


# -- over a real socket: uvicorn's own chunked decoding and header handling ---------------------------------------


@pytest.fixture
def live_bff(tmp_path: Path) -> Iterator[tuple[str, int]]:
    # No FusionAuth behind it: nothing these requests may do would reach it.
    with serve(create_app(make_settings(tmp_path))) as live:
        yield live.host, live.port


def raw_http(address: tuple[str, int], head: str, body: bytes = b"") -> tuple[str, dict[str, str], bytes]:
    """One request written byte for byte (`head` without Host and Connection), read until the server closes."""
    request = f"{head}\r\nHost: {address[0]}:{address[1]}\r\nConnection: close\r\n\r\n".encode("latin-1") + body
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    answer, _, content = received.partition(b"\r\n\r\n")
    status, *lines = answer.decode("latin-1").split("\r\n")
    return status, {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}, content


@pytest.mark.live
def test_over_real_http_chunked_bodies_duplicate_headers_and_head(live_bff: tuple[str, int]) -> None:
    csrf = f"X-CSRF: 1\r\nOrigin: {PUBLIC_URL}\r\nContent-Type: application/json"
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in (OVERSIZED[:8000], OVERSIZED[8000:]))
    head = f"POST /api/telegrams HTTP/1.1\r\n{csrf}\r\nTransfer-Encoding: chunked"
    status, headers, body = raw_http(live_bff, head, chunked + b"0\r\n\r\n")
    assert status.startswith("HTTP/1.1 413"), status
    assert headers["content-type"] == "application/json" and b'"request_too_large"' in body

    head = f"POST /auth/logout HTTP/1.1\r\n{csrf}\r\nOrigin: https://evil.example\r\nContent-Length: 2"
    status, _, body = raw_http(live_bff, head, b"{}")
    assert status.startswith("HTTP/1.1 400") and b'"invalid_request"' in body

    status, headers, body = raw_http(live_bff, "HEAD /healthz HTTP/1.1")
    assert status == "HTTP/1.1 200 OK" and headers["content-length"] == "15" and body == b""
