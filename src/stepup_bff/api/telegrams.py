"""The privileged action: sending a singing telegram needs a fresh second factor; listing them does not."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Response

from ..clock import iso
from ..deps import CurrentUser, IdempotencyKey, ServicesDep, TelegramSender
from ..errors import IdempotencyKeyReused
from ..storage import Telegram
from .schemas import TelegramIn, TelegramListOut, TelegramOut

router = APIRouter(prefix="/api/telegrams", tags=["telegrams"])

LIST_LIMIT = 100


def _out(telegram: Telegram) -> TelegramOut:
    return TelegramOut(
        id=telegram.id,
        recipient=telegram.recipient,
        message=telegram.message,
        created_at=iso(telegram.created_at),
        status=telegram.status,
    )


@router.post("", status_code=201)
async def send_telegram(
    body: TelegramIn,
    privileged: TelegramSender,
    services: ServicesDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TelegramOut:
    """Queue a singing telegram: a step-up confirms this very telegram (step_up.actions.send_telegram). The same
    Idempotency-Key with the same body from the same user returns the original (200) without a new step-up; with a
    different body it is refused (422), since answering with the old telegram would hide that the new one was not
    sent."""
    user = privileged.session.user
    telegram = Telegram(
        id="tg_" + secrets.token_urlsafe(12),
        user_id=user.id,
        recipient=body.recipient,
        message=body.message,
        created_at=services.clock.now(),
    )
    # The telegram and the activity event of its step-up in one transaction: no telegram is sent without its record.
    stored, created = await services.telegrams.create_telegram(telegram, idempotency_key, activity=privileged.activity)
    privileged.done(recorded=created)
    if not created:
        if (stored.recipient, stored.message) != (telegram.recipient, telegram.message):
            raise IdempotencyKeyReused()
        response.status_code = 200
    return _out(stored)


@router.get("")
async def list_telegrams(user: CurrentUser, services: ServicesDep) -> TelegramListOut:
    """The user's telegrams, newest first."""
    return TelegramListOut(telegrams=[_out(t) for t in await services.telegrams.list_telegrams(user.id, LIST_LIMIT)])
