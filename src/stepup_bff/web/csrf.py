"""Cross-site request forgery defence for every state-changing request (any method but GET, HEAD, OPTIONS), in
three layers, plus JSON-only bodies. `web/edge.py` applies them to every request before routing, so a new route
has them without asking, and a refused request never reaches a dependency.

1. A static custom header (`X-CSRF: 1`): a cross-origin page cannot add one without a CORS preflight, which we
   never grant (the IETF browser-based-apps BCP's recommended BFF defence; Duende BFF does the same).
2. Fetch Metadata: `Sec-Fetch-Site`, when the browser sends it, must be `same-origin`. "same-site" is refused, so a
   sibling subdomain cannot forge requests; so is "none", which browsers send only for a navigation the person
   started themselves (a typed URL, a bookmark), and such a navigation cannot carry X-CSRF anyway.
3. `Origin`, when present, must be exactly our public origin.
Plus JSON-only bodies, so no HTML form can post to us (ASVS 3.5.2): forms can send only urlencoded, multipart and
text/plain without a preflight.

Each header is judged on its one value: the edge refuses a request that repeats any of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import CsrfRejected, UnsupportedMediaType

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check(method: str, headers: Mapping[str, str], public_url: str) -> None:
    """`headers` by lower-case name, each with its one value."""
    if method in SAFE_METHODS:
        return
    if headers.get("x-csrf") != "1":
        raise CsrfRejected("This request is missing the X-CSRF: 1 header.")
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site != "same-origin":
        raise CsrfRejected("Cross-site requests are not accepted (Sec-Fetch-Site must be same-origin).")
    origin = headers.get("origin")
    if origin is not None and origin != public_url:
        raise CsrfRejected("Requests from other origins are not accepted.")


def check_media_type(headers: Mapping[str, str]) -> None:
    """A body is `application/json`, with no parameter but `charset=utf-8` (RFC 8259: JSON exchanged between
    systems is UTF-8; a request claiming another charset is one we would misread)."""
    media_type, *parameters = headers.get("content-type", "").split(";")
    if media_type.strip().lower() != "application/json":
        raise UnsupportedMediaType()
    for parameter in filter(None, (p.strip() for p in parameters)):
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaType()
