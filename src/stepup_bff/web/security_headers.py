"""Headers every response carries: a strict CSP and friends, and no caching of anything personal."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere (the SPA is plain ES modules), no framing, no plugins, no <base> tricks,
# and fetch() may only talk to us: the browser never calls FusionAuth directly.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_COMMON = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    # The callback URL carries an authorization code: never hand any URL of ours to another site.
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_HSTS = (b"strict-transport-security", b"max-age=63072000; includeSubDomains")
_NO_STORE = (b"cache-control", b"no-store")
_PRIVATE_PREFIXES = ("/api/", "/auth/")


def response_headers(*, https: bool, private: bool) -> tuple[tuple[bytes, bytes], ...]:
    """The headers a response gets: every one of `_COMMON`, HSTS on https, and no-store under /api/ and /auth/."""
    common = (*_COMMON, _HSTS) if https else tuple(_COMMON)
    return (*common, _NO_STORE) if private else common


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        # Built once, not per response: (the headers we set, the names they replace), public and private paths.
        public = response_headers(https=https, private=False)
        private = response_headers(https=https, private=True)
        self._public = (public, frozenset(name for name, _ in public))
        self._private = (private, frozenset(name for name, _ in private))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ours, names = self._private if scope["path"].startswith(_PRIVATE_PREFIXES) else self._public

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Ours replace any the app set (a route cannot loosen them); header names are lower case in ASGI.
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                headers.extend(ours)
                message["headers"] = headers  # the message is this response's own: no copy needed
            await send(message)

        await self.app(scope, receive, send_with_headers)
