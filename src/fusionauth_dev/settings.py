"""The few knobs of the dev server itself (FusionAuth's own configuration comes from kickstart)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request


@dataclass(frozen=True)
class DevSettings:
    # Base URL for the endpoints advertised by discovery. None: derive it from each request's own URL, which is right
    # behind any port a test picked.
    public_url: str | None = None
    # Serve /_dev (outbox and current TOTP codes). Only ever on a development machine.
    dev_console: bool = True

    def base_url(self, request: Request) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")
