"""Response bodies, so the OpenAPI document describes exactly what the SPA receives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


def iso(timestamp: float) -> str:
    # Milliseconds, not seconds: a countdown in the browser must not end before the server's window does.
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]  # probe name -> "ok"


class LogoutOut(BaseModel):
    redirect: str


class _Input(BaseModel):
    # Unknown fields are an error: a typo in a client should fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StepUpMethodOut(BaseModel):
    id: str
    method: str
    hint: str
    last_used: bool


class StepUpStartOut(BaseModel):
    methods: list[StepUpMethodOut]
    expires_at: str


class StepUpSendIn(_Input):
    method_id: Annotated[str, Field(min_length=1, max_length=64)]


class StepUpSendOut(BaseModel):
    sent_to: str
    retry_after: int
    sends_remaining: int


class StepUpFinishIn(_Input):
    # Six-digit codes, and FusionAuth's longer recovery codes; never echoed back in errors.
    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
    method_id: Annotated[str | None, Field(max_length=64)] = None


class StepUpFinishOut(BaseModel):
    step_up: StepUpStatus


class TelegramIn(_Input):
    recipient: Annotated[str, Field(min_length=1, max_length=100)]
    message: Annotated[str, Field(min_length=1, max_length=500)]


class TelegramOut(BaseModel):
    id: str
    recipient: str
    message: str
    created_at: str
    status: str


class TelegramListOut(BaseModel):
    telegrams: list[TelegramOut]
