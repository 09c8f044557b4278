"""The signed-in person's own security activity log, newest first, a page at a time."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated

from fastapi import APIRouter, Query

from ..clock import iso
from ..deps import ActivityDep, CurrentUser
from ..errors import InvalidRequest
from ..storage import ActivityEvent
from .schemas import ActivityEventOut, ActivityListOut

router = APIRouter(prefix="/api/activity", tags=["activity"])

PAGE = 20
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,32}")


def _cursor(seq: int) -> str:
    # Opaque to clients (they pass it back as it is), so the paging can change without breaking them.
    return base64.urlsafe_b64encode(f"a1:{seq}".encode()).decode().rstrip("=")


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        if not _CURSOR.fullmatch(cursor):
            raise ValueError("not a cursor")
        version, _, seq = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().partition(":")
        if version != "a1" or not seq.isdigit():
            raise ValueError("not a cursor")
        return int(seq)
    except (ValueError, binascii.Error) as exc:
        raise InvalidRequest("cursor: not one this API gave out.") from exc


def _out(event: ActivityEvent) -> ActivityEventOut:
    detail = json.loads(event.detail)
    return ActivityEventOut(
        id=event.seq,
        at=iso(event.at_ms / 1000),
        kind=event.kind,
        outcome=event.outcome,
        address=event.address,
        agent=event.agent,
        **{name: value for name, value in detail.items() if name in ActivityEventOut.model_fields},
    )


@router.get("")
async def list_activity(
    user: CurrentUser,
    activity: ActivityDep,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE,
) -> ActivityListOut:
    """Sign-ins, sign-outs, ended sessions, every step of every step-up and each privileged action, newest first.
    `next_cursor` is null on the last page."""
    events = await activity.recent(user.id, _before(cursor), limit + 1)
    page = list(events[:limit])
    more = len(events) > limit
    return ActivityListOut(events=[_out(e) for e in page], next_cursor=_cursor(page[-1].seq) if more else None)
