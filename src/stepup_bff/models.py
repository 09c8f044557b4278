"""Response bodies, so the OpenAPI document describes exactly what the SPA receives."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str


class StepUpStatus(BaseModel):
    active: bool
    expires_at: str | None = None
    method: str | None = None


class SessionOut(BaseModel):
    authenticated: bool
    user: UserOut | None = None
    signed_in_at: str | None = None
    expires_at: str | None = None
    idle_expires_at: str | None = None
    step_up: StepUpStatus | None = None


class LogoutOut(BaseModel):
    redirect: str
