"""The edge: rules every request passes before routing, any dependency or any handler runs, so a refused request
has done nothing at all (no FusionAuth call, no store write, no cookie). The README's "Errors" section lists them;
`web/methods.py` adds HEAD and Allow, `deps.NoBody` the empty-body rule of routes that take no input.

In this order:

1. The single-valued headers we read (Origin, Sec-Fetch-Site, X-CSRF, Content-Type, Content-Length, Host,
   Idempotency-Key) appear at most once, and Transfer-Encoding never comes with Content-Length: 400
   `invalid_request` (the latter on a connection that is then closed).
2. A declared Content-Length over `MAX_BODY_SIZE` is refused unread: 413 `request_too_large`.
3. No query parameter appears twice: 400 `invalid_request` (RFC 6749 section 3.1 for the OAuth callback). Browser
   navigations (GET /auth/*) get the redirect to `/?error=invalid_request` instead, as for every error.
4. State-changing requests pass the CSRF checks (`web/csrf.py`): 403 `csrf_rejected`. The one exception is FusionAuth's
   webhook (`POST /webhooks/fusionauth`): no browser sends it, it reads no cookie, and it accepts nothing but a valid
   signature over its body (api/webhooks.py), which is what the CSRF rules stand in for elsewhere.
5. The body is read here, whole, counting bytes as they arrive, chunked or not: past `MAX_BODY_SIZE` it is 413.
   The app then gets the body from memory, so no route can act before the last byte was counted.
6. A state-changing request's non-empty body is JSON: 415 `unsupported_media_type`.
"""

from __future__ import annotations

import logging
import re

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AppError, InvalidRequest, RequestTooLarge, error_response
from . import csrf

logger = logging.getLogger(__name__)

# Every body this API accepts is a few hundred bytes (a telegram is at most ~600). Refusing more keeps an
# anonymous request from making us buffer and parse megabytes.
MAX_BODY_SIZE = 16 * 1024

# FusionAuth's webhook: an event carries the whole User object (its `data`, registrations, methods), which can be a few
# tens of KiB. Still bounded, since the body is read (and hashed) before its signature is checked.
WEBHOOK_PATH = "/webhooks/fusionauth"
MAX_WEBHOOK_BODY_SIZE = 256 * 1024

# Refuse repeats rather than judge every value: a browser never sends these twice (Origin and Sec-Fetch-Site are
# set by the browser itself, X-CSRF by our api.js, and fetch() joins a repeated header into one line, which then
# fails its check as a whole). A second line means a proxy or a client we do not know appended one, and "which
# one counts" is exactly where two parsers (a proxy's or a firewall's, and ours) disagree. So there is
# nothing to judge: the request is refused whatever the values. Host too (RFC 9112 section 3.2: a server MUST
# answer 400), and Idempotency-Key, a structured-field Item that two lines would make invalid. Headers that may
# legitimately repeat (Cookie, which HTTP/2 splits; Accept) are none of our business here.
SINGLE_VALUED_HEADERS = frozenset(
    {b"origin", b"sec-fetch-site", b"x-csrf", b"content-type", b"content-length", b"host", b"idempotency-key"}
)

_DIGITS = re.compile(r"[0-9]+")
# RFC 9112 section 6.1: a request with both Transfer-Encoding and Content-Length is framed by the former, and the
# server MUST close the connection after answering it. h11 (uvicorn's parser) frames it by Transfer-Encoding and
# keeps the connection open, so behind a proxy that frames by Content-Length, whatever the proxy sent as the rest
# of the body would be answered here as a request of its own: request smuggling. Refused, and closed.
_CLOSE = {"Connection": "close"}
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, *, public_url: str, max_body_size: int = MAX_BODY_SIZE) -> None:
        self.app = app
        self.public_url = public_url
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        webhook = scope["path"] == WEBHOOK_PATH and scope["method"] == "POST"
        limit = MAX_WEBHOOK_BODY_SIZE if webhook else self.max_body_size
        try:
            headers = self._check_before_reading(scope, limit=limit, csrf_rules=not webhook)
            body = await self._read_body(receive, limit)
            if body is None:
                return  # the client went away while sending: nobody is waiting for an answer
            if body and scope["method"] not in csrf.SAFE_METHODS:
                csrf.check_media_type(headers)
        except AppError as exc:
            request = Request(scope)
            # The path is the client's: keep it to printable ASCII so that no CR/LF can forge a log line.
            path = _UNPRINTABLE.sub("?", scope["path"][:200])
            logger.warning("refused %s %s: %s (%s)", request.method, path, exc.error_code, exc)
            response = error_response(request, exc)
            if exc.headers == _CLOSE:
                # A navigation's redirect carries no error headers, and this one must close the connection too.
                response.headers.update(_CLOSE)
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    def _check_before_reading(self, scope: Scope, *, limit: int, csrf_rules: bool) -> dict[str, str]:
        """Rules 1 to 4; the single-valued headers, by lower-case name, for rule 6."""
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name = raw_name.lower()
            if name in SINGLE_VALUED_HEADERS:
                key = name.decode("latin-1")
                if key in headers:
                    raise InvalidRequest(f"The {key} header may appear only once.")
                headers[key] = raw_value.decode("latin-1")

        declared = headers.get("content-length")
        if declared is not None and any(name.lower() == b"transfer-encoding" for name, _ in scope["headers"]):
            raise InvalidRequest("Transfer-Encoding and Content-Length may not both be sent.", headers=_CLOSE)
        if declared is not None:
            declared = declared.strip()
            if not _DIGITS.fullmatch(declared):
                raise InvalidRequest("Content-Length is not a number.")
            # Twelve digits are a terabyte; more would only make int() work for nothing.
            if len(declared) > 12 or int(declared) > limit:
                raise self._too_large(limit)

        query_string: bytes = scope.get("query_string", b"")
        if query_string:
            query = QueryParams(query_string)  # parsed exactly as the routes will parse it
            if len(query) != len(query.multi_items()):
                # RFC 6749 section 3.1: OAuth parameters MUST NOT be included more than once. Which of two
                # `code`s or `state`s counts is again where two parsers disagree; no route of ours takes a list,
                # so no parameter may repeat.
                raise InvalidRequest("A query parameter appears more than once.")

        if csrf_rules:
            csrf.check(scope["method"], headers, self.public_url)
        return headers

    async def _read_body(self, receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                # Stop reading: the server discards the rest and closes the connection after our answer.
                raise self._too_large(limit)
            if not message.get("more_body", False):
                return b"".join((*chunks, chunk)) if chunks else chunk
            chunks.append(chunk)

    @staticmethod
    def _too_large(limit: int) -> RequestTooLarge:
        return RequestTooLarge(f"Request bodies are limited to {limit // 1024} KiB.")


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body, already read, as one message; after it the server's own messages (the disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if delivered:
            return await receive()
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
