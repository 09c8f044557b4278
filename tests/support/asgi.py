"""Call the app at the ASGI level, for requests no HTTP client library will build: a header sent twice, a body
that arrives in pieces without a Content-Length, a HEAD whose answer must carry no body. It reports what the app
sent back and how many body bytes it pulled.

    exchange = call(client, "POST", "/auth/logout", headers=[("origin", a), ("origin", b)], body=[b"{}"])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.testclient import TestClient


@dataclass(frozen=True)
class Exchange:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    pulled: int  # request-body bytes the app asked for

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    client: TestClient,
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Sequence[tuple[str, str]] = (),
    body: Sequence[bytes] = (),
) -> Exchange:
    """One request through `client`'s app (its lifespan state, its cookie jar), exactly as given: headers are sent
    in order and not merged, and each piece of `body` is its own `http.request` message."""
    pieces = list(body) or [b""]
    pulled = 0
    sent: list[dict[str, Any]] = []
    answered: anyio.Event | None = None

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not pieces:
            # Like a client that stays connected: the disconnect comes once the answer is complete.
            assert answered is not None
            await answered.wait()
            return {"type": "http.disconnect"}
        piece = pieces.pop(0)
        pulled += len(piece)
        return {"type": "http.request", "body": piece, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            assert answered is not None
            answered.set()

    async def run() -> None:
        nonlocal answered
        answered = anyio.Event()
        await client.app(scope, receive, send)

    raw_headers = [(b"host", b"localhost:9000")]
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in client.cookies.jar)
    if cookies:
        raw_headers.append((b"cookie", cookies.encode("latin-1")))
    raw_headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode("latin-1"),
        "headers": raw_headers,
        "client": ("127.0.0.1", 4444),
        "server": ("localhost", 9000),
        "state": dict(client.app_state),
    }
    client.portal.call(run)

    start = next(message for message in sent if message["type"] == "http.response.start")
    return Exchange(
        status=start["status"],
        headers=[(key.decode("latin-1").lower(), value.decode("latin-1")) for key, value in start.get("headers", [])],
        body=b"".join(message.get("body", b"") for message in sent if message["type"] == "http.response.body"),
        pulled=pulled,
    )
