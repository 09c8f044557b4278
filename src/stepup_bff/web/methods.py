"""Which methods a path answers: HEAD wherever GET (RFC 9110 section 9.3.2), and the `Allow` header every 405
must carry (section 15.5.6).

FastAPI's routes answer only the methods they declare, so HEAD on a GET route would be a 405, and declaring HEAD
route by route would add a second operation, with the same operation id, to the OpenAPI document for each.
`HeadMiddleware` serves HEAD generically instead, for every GET route, the SPA's files and whatever is added
later: the request runs as the GET it mirrors, and the answer goes out with GET's status and headers
(Content-Length included) and without the body. It does nothing the same GET would not.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_PROBED = ("GET", "POST", "PUT", "PATCH", "DELETE")


class HeadMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] in ("http.response.body", "http.response.pathsend"):
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # A copy: the server's own scope (its access log) still says HEAD.
        mirrored = {**scope, "method": "GET"}
        await self.app(mirrored, receive, send_without_body)
        # What routing recorded on the copy, handed back so that the metrics and the access line outside name the
        # route a HEAD was answered by, as for its GET.
        for key in ("route", "endpoint"):
            if key in mirrored:
                scope[key] = mirrored[key]


def allowed_methods(request: Request) -> str:
    """The `Allow` value for a 405 on this path: every method some route would take here, HEAD with GET. Several
    routes may share a path (GET and POST /api/telegrams), so each method is tried against all of them."""
    routes = request.app.router.routes
    allowed = {
        method
        for method in _PROBED
        if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)
    }
    if not allowed:
        # No route has this path: the 405 came from the SPA's files (`app.frontend`), which can only be read.
        allowed.add("GET")
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed))
