"""Kickstart-format files sent to a running FusionAuth: ``python -m fusionauth_dev apply --url URL FILE...``.

Kickstart runs only on an empty FusionAuth (docs/fusionauth.md §9); this sends an overlay's requests (e.g.
``kickstart/email-mfa.json`` on a licensed instance) one by one with an admin API key instead.

Kept out of ``fusionauth_dev.kickstart`` and reached through ``fusionauth_dev.__main__``: the package's ``__init__``
imports ``kickstart``, so ``python -m fusionauth_dev.kickstart`` would have runpy execute an already imported module
and warn (RuntimeWarning). Neither this module nor ``__main__`` is imported by ``__init__``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import httpx

from fusionauth_dev.kickstart import KickstartError, KickstartPlan, load_kickstart

PROG = "python -m fusionauth_dev apply"


def apply_remote(plan: KickstartPlan, *, url: str, api_key: str, timeout: float = 10.0) -> int:
    """Send each request of ``plan`` to a running FusionAuth with ``api_key``; stop at the first failure."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=timeout) as client:
        for entry in plan.api_keys:
            body = {"apiKey": {k: v for k, v in entry.spec.items() if k != "description"}}
            response = client.post("/api/api-key", json=body, headers={"Authorization": api_key})
            if not _report(response, "POST /api/api-key", entry.source):
                return 1
        for request in plan.requests:
            headers = {"Authorization": api_key, "Content-Type": request.content_type or "application/json"}
            if request.tenant_id:
                headers["X-FusionAuth-TenantId"] = request.tenant_id
            response = client.request(
                request.method, request.url, content=json.dumps(request.body or {}), headers=headers
            )
            if not _report(response, f"{request.method} {request.url}", request.source):
                return 1
    return 0


def _report(response: httpx.Response, what: str, source: str) -> bool:
    ok = 200 <= int(response.status_code) < 300
    sys.stdout.write(f"{response.status_code} {what} ({source})\n")
    if not ok:
        sys.stderr.write(f"failed: {response.text or '(empty body)'}\n")
    return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Apply kickstart-format files (e.g. an overlay) to a running FusionAuth: every request of the "
        "files, in order, with an API key.",
    )
    parser.add_argument("--url", required=True, help="FusionAuth's base URL, e.g. http://localhost:9011")
    parser.add_argument(
        "--api-key", default=os.environ.get("FUSIONAUTH_ADMIN_API_KEY"), help="default: $FUSIONAUTH_ADMIN_API_KEY"
    )
    parser.add_argument("--tenant-id", help="value of #{FUSIONAUTH_TENANT_ID} (default: defaultTenantId)")
    parser.add_argument("files", nargs="+", help="kickstart-format files, applied in order")
    args = parser.parse_args(argv)
    if not args.api_key:
        parser.error("an API key is required (--api-key or FUSIONAUTH_ADMIN_API_KEY)")
    builtins = {"FUSIONAUTH_TENANT_ID": args.tenant_id} if args.tenant_id else None
    # Only FusionAuth knows these ids; an overlay that names one fails loudly instead of sending a made-up id.
    unavailable = ["FUSIONAUTH_DEFAULT_SIGNING_KEY_ID"]
    if not args.tenant_id:
        unavailable.append("FUSIONAUTH_TENANT_ID")
    try:
        plan = load_kickstart(args.files, builtins=builtins, unavailable=unavailable)
    except KickstartError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    try:
        return apply_remote(plan, url=args.url, api_key=args.api_key)
    except httpx.TransportError as exc:
        sys.stderr.write(f"cannot reach FusionAuth at {args.url}: {exc}\n")
        return 1
