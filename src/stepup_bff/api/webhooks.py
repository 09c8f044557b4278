"""POST /webhooks/fusionauth: FusionAuth's events, the moment they happen (auth/lifecycle.py says what each does).

FusionAuth sends no X-CSRF (the edge lets this one path through without the browser's CSRF rules), so the route
accepts nothing but a valid signature over the raw body (fusionauth/webhooks.py), checked before the body is even
parsed: otherwise 401 `invalid_signature`, nothing done, one log line. A signed event is answered 2xx at once, for
types we do not act on and duplicates too, so that FusionAuth never retries in a loop (or, for a transactional
event, rolls an administrator's operation back); its effect runs right after the answer has gone.
"""

from __future__ import annotations

import contextlib
import logging

from fastapi import APIRouter, BackgroundTasks, Request

from ..deps import ServicesDep
from ..errors import AppError, InvalidRequest, InvalidSignature
from ..fusionauth.webhooks import SIGNATURE_HEADER, Event, InvalidEvent, WebhookRefused, parse_event
from ..services import Services
from .schemas import WebhookOut

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/webhooks", tags=["webhooks"], include_in_schema=True)


@router.post("/fusionauth")
async def fusionauth_events(request: Request, background: BackgroundTasks, services: ServicesDep) -> WebhookOut:
    body = await request.body()  # the raw bytes, as the edge read them: the signature is over exactly these
    signatures = request.headers.getlist(SIGNATURE_HEADER)
    try:
        if len(signatures) > 1:
            raise WebhookRefused("the signature header appears more than once")
        await services.webhooks.verify(signatures[0] if signatures else None, body)
    except WebhookRefused as exc:
        logger.warning("webhook refused: %s", exc)
        services.metrics.webhook("unverified", "refused")
        raise InvalidSignature() from exc
    try:
        event = parse_event(body)
    except InvalidEvent as exc:
        logger.warning("webhook refused: signed, but %s", exc)
        services.metrics.webhook("unverified", "invalid")
        raise InvalidRequest("Not a FusionAuth event.") from exc
    admission = await services.lifecycle.admit(event)
    logger.info("webhook %s (%s): %s", event.id, event.type, admission)
    if admission == "apply":
        background.add_task(_apply, services, event)
    else:
        services.metrics.webhook(event.type, admission)
    return WebhookOut()


async def _apply(services: Services, event: Event) -> None:
    try:
        await services.lifecycle.apply(event)
    except AppError as exc:
        # The store or FusionAuth failed half-way: what ended has ended. Let a redelivery try the rest; the refresh
        # of each session covers what no delivery does, within the access token's lifetime.
        logger.error("webhook %s (%s) not fully applied: %s", event.id, event.type, exc.error_code)
        with contextlib.suppress(AppError):
            await services.lifecycle.forget(event)
        return
    services.metrics.webhook(event.type, "applied")
