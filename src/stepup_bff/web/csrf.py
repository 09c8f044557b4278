"""Cross-site request forgery defence for every state-changing request, in three layers.

1. A static custom header (`X-CSRF: 1`): a cross-origin page cannot add one without a CORS preflight, which we
   never grant (the IETF browser-based-apps BCP's recommended BFF defence; Duende BFF does the same).
2. Fetch Metadata: `Sec-Fetch-Site` must be same-origin when the browser sends it. "same-site" is refused too, so
   a sibling subdomain cannot forge requests.
3. `Origin`, when present, must be exactly our public origin.
Plus JSON-only bodies, so no HTML form can post to us (ASVS 3.5.2).
"""

from __future__ import annotations

import logging
from typing import NoReturn

from fastapi import Request

from ..errors import CsrfRejected, UnsupportedMediaType

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_request(request: Request, public_url: str) -> None:
    if request.method in SAFE_METHODS:
        return
    headers = request.headers
    if headers.get("x-csrf") != "1":
        _refuse(request, "missing X-CSRF header", "This request is missing the X-CSRF: 1 header.")
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        _refuse(request, f"Sec-Fetch-Site {fetch_site}", "Cross-site requests are not accepted.")
    origin = headers.get("origin")
    if origin is not None and origin != public_url:
        _refuse(request, "foreign Origin", "Requests from other origins are not accepted.")
    has_body = int(headers.get("content-length") or 0) > 0 or "transfer-encoding" in headers
    if has_body:
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise UnsupportedMediaType()


def _refuse(request: Request, reason: str, description: str) -> NoReturn:
    logger.warning("refused %s %s: %s", request.method, request.url.path, reason)
    raise CsrfRejected(description)
