"""Security review of the edge (web/edge.py): request framing that two HTTP parsers could read differently.

A request with both `Transfer-Encoding` and `Content-Length` is the classic request-smuggling shape: a front proxy
that frames by Content-Length and uvicorn (h11), which frames by Transfer-Encoding, disagree on where the request
ends, and what one takes for body the other takes for the next request. RFC 9112 section 6.1: a server that
receives both MUST close the connection after answering.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conftest import PUBLIC_URL, make_settings
from stepup_bff.app import create_app
from support.asgi import call
from support.live_server import serve

CSRF = [("x-csrf", "1"), ("origin", PUBLIC_URL), ("content-type", "application/json")]


def test_transfer_encoding_with_content_length_is_refused_before_anything_runs(signed_in: TestClient) -> None:
    exchange = call(
        signed_in,
        "POST",
        "/auth/logout",
        headers=[*CSRF, ("content-length", "40"), ("transfer-encoding", "chunked")],
        body=[b"{}"],
    )

    assert (exchange.status, exchange.json()["error"]) == (400, "invalid_request")
    assert exchange.header("connection") == "close"
    assert exchange.header("set-cookie") is None  # the sign-out did not run
    assert signed_in.get("/api/session").json()["authenticated"] is True


def test_a_navigation_with_both_is_redirected_and_the_connection_closed(client: TestClient) -> None:
    exchange = call(
        client,
        "GET",
        "/auth/callback",
        query="code=a&state=b",
        headers=[("content-length", "5"), ("transfer-encoding", "chunked")],
        body=[b""],
    )

    assert (exchange.status, exchange.header("location")) == (303, "/?error=invalid_request")
    assert exchange.header("connection") == "close"


@pytest.fixture(params=["h11", "httptools"])
def live_bff(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    # Both HTTP parsers uvicorn can pick: h11 (the fallback) and httptools (uvicorn[standard], production).
    with serve(create_app(make_settings(tmp_path)), http=request.param) as live:
        yield live.host, live.port


@pytest.mark.live
def test_over_real_http_a_smuggled_request_behind_both_is_never_answered(live_bff: tuple[str, int]) -> None:
    host = f"Host: {live_bff[0]}:{live_bff[1]}\r\n"
    csrf = f"X-CSRF: 1\r\nOrigin: {PUBLIC_URL}\r\nContent-Type: application/json\r\n"
    # A proxy framing by Content-Length would see one request with a 70-byte body; framed by Transfer-Encoding
    # it is a sign-out followed by a second request on the same connection.
    smuggled = f"GET /healthz HTTP/1.1\r\n{host}\r\n"
    chunked = "2\r\n{}\r\n0\r\n\r\n"
    head = f"POST /auth/logout HTTP/1.1\r\n{host}{csrf}Content-Length: {len(chunked + smuggled)}\r\n"
    request = f"{head}Transfer-Encoding: chunked\r\n\r\n{chunked}{smuggled}"
    with socket.create_connection(live_bff, timeout=5) as sock:
        sock.sendall(request.encode("latin-1"))
        received = b""
        while chunk := sock.recv(65536):  # ends only when the server closes the connection
            received += chunk

    assert received.startswith(b"HTTP/1.1 400 "), received[:200]
    # Which layer refuses depends on the parser uvicorn picked: httptools (uvicorn[standard], the production
    # install) rejects the ambiguous framing itself with its plain-text 400; h11 passes it on and the edge
    # middleware answers our JSON error. Either way the request is refused whole and the connection closed.
    assert b'"invalid_request"' in received or b"Invalid HTTP request received." in received
    assert received.count(b"HTTP/1.1 ") == 1, "the request after the body was answered: it was smuggled"
