"""Writing and reading the activity log.

What an event may say is fixed here: its kind and outcome come from the vocabularies below, and its detail may only
use the fields of `_DETAIL`, each a short code-like string, a number or a list of such strings. A value outside that
shape is a bug and raises at once: nothing else (a token, a code, a session id, a message someone typed) can end up in
the log by accident.

Failure policy. An event written on its own (`record`) that cannot be written (the database is down:
`DatabaseUnavailable`) is logged at ERROR with its kind and user, counted (`stepup_bff_activity_write_failures_total`),
and never changes the answer of the request that caused it: a step-up, a sign-in or a sign-out does not depend on the
database. The chain stays whole (seq is assigned at insert); only that event is missing.

An action that writes to the database itself (a telegram) writes its event in its own transaction instead
(`prepare`, the database's `activity=`, then `joined`; deps.require_privileged_action): both are committed or neither
is, so no telegram is ever without its record, and one that could not be recorded was not sent (503: nothing happened,
and the client may try again).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from ..clock import Clock
from ..errors import StoreUnavailable
from ..ops.metrics import ActivityKind as Kind
from ..storage import ActivityEvent, ActivityStore, EventBuilder
from .agents import current_client
from .chain import event_hash

if TYPE_CHECKING:
    from ..ops.metrics import Metrics

__all__ = ["ActivityLog", "Kind", "Outcome", "PendingEvent", "end_event"]

logger = logging.getLogger(__name__)

Outcome = Literal["success", "failure", "refused", "timeout", "revoked", "replaced", "ended"]

_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Every detail field there is, and what its value may be: a code-like string, a small number, or a list of codes.
_DETAIL: Mapping[str, type] = {
    "via": str,  # how someone signed in: hosted, native
    "method": str,  # the second factor: authenticator, email, sms
    "methods": list,  # the methods a challenge offered
    "action": str,  # a privileged action's name (step_up.actions)
    "transaction": str,  # the id of the transaction a step-up confirmed (opaque, not secret: the 401 carries it)
    "grant": str,  # a reference to the grant (a hash of its id: the id itself is only ever in the cookie)
    "reason": str,  # why a session ended; account_locked: a step-up paused by FusionAuth's lock, not ours
    "attempts_remaining": int,
    "retry_after": int,
}

# SessionManager's end reasons (ops/metrics.SessionEndReason, and whatever is added later) as events.
_ENDS: Mapping[str, tuple[Kind, Outcome]] = {
    "sign_out": ("sign_out", "success"),
    "replaced": ("session_ended", "replaced"),
    "idle_timeout": ("session_ended", "timeout"),
    "absolute_timeout": ("session_ended", "timeout"),
    "tampered": ("session_ended", "revoked"),
    "store_failure": ("session_ended", "ended"),
    "signed_out_elsewhere": ("session_ended", "ended"),
    "refresh_refused": ("session_ended", "revoked"),
    "refresh_outage": ("session_ended", "ended"),
    "user_deactivated": ("session_ended", "revoked"),
    "user_deleted": ("session_ended", "revoked"),
    "tokens_revoked": ("session_ended", "revoked"),
    "login_prevented": ("session_ended", "revoked"),
    "password_changed": ("session_ended", "revoked"),
    "factors_changed": ("session_ended", "revoked"),
    "too_many_sessions": ("session_ended", "replaced"),
}


def _check_detail(detail: Mapping[str, object]) -> str:
    for name, value in detail.items():
        expected = _DETAIL.get(name)
        if expected is None:
            raise ValueError(f"activity detail {name!r} is not one the log admits")
        if expected is str and not (isinstance(value, str) and _CODE.fullmatch(value)):
            raise ValueError(f"activity detail {name!r} must be a short code")
        if expected is int and not (isinstance(value, int) and 0 <= value < 10**9):
            raise ValueError(f"activity detail {name!r} must be a small number")
        if expected is list and not (
            isinstance(value, list)
            and len(value) <= 8
            and all(isinstance(v, str) and _CODE.fullmatch(v) for v in value)
        ):
            raise ValueError(f"activity detail {name!r} must be a short list of codes")
    return json.dumps(dict(detail), sort_keys=True, separators=(",", ":"))


def end_event(reason: str) -> tuple[Kind, Outcome, str]:
    """A session's end as (kind, outcome, reason). A reason this release does not know (a newer way to end sessions)
    is recorded as an ended session, its name kept if it is code-like."""
    kind, outcome = _ENDS.get(reason, ("session_ended", "ended"))
    return kind, outcome, reason if _CODE.fullmatch(reason) else "other"


@dataclass(frozen=True)
class PendingEvent:
    """An event made ready (`ActivityLog.prepare`: its fields checked, its client and time taken) and not yet written:
    `build` is the database's EventBuilder, given the next seq and the head's hash inside the transaction that
    appends it."""

    user_id: str
    kind: Kind
    build: EventBuilder = field(repr=False)


class ActivityLog:
    def __init__(self, store: ActivityStore, clock: Clock, metrics: Metrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics

    def prepare(
        self, user_id: str, kind: Kind, outcome: Outcome = "success", /, **detail: str | int | list[str]
    ) -> PendingEvent:
        """One event for `user_id`, checked and dated now, for `append` or for another write's own transaction (the
        database's `activity=`; then `joined` once that transaction has committed)."""
        encoded = _check_detail(detail)
        address, agent = current_client()
        at_ms = int(round(self._clock.now() * 1000))

        def build(seq: int, prev_hash: str) -> ActivityEvent:
            event = ActivityEvent(user_id, seq, at_ms, kind, outcome, encoded, address, agent, prev_hash, "")
            return replace(event, hash=event_hash(event))

        return PendingEvent(user_id, kind, build)

    async def record(
        self, user_id: str, kind: Kind, outcome: Outcome = "success", /, **detail: str | int | list[str]
    ) -> ActivityEvent | None:
        """Append one event for `user_id`; the event, or None if the database could not take it (see the module
        docstring: the caller carries on)."""
        return await self.append(self.prepare(user_id, kind, outcome, **detail))

    async def append(self, pending: PendingEvent) -> ActivityEvent | None:
        """Write a prepared event in a transaction of its own; None if the database could not take it (the caller
        carries on)."""
        try:
            event = await self._store.append_activity(pending.user_id, pending.build)
        except StoreUnavailable:
            logger.error(
                "activity event not recorded (database unavailable): user=%s kind=%s", pending.user_id, pending.kind
            )
            if self._metrics is not None:
                self._metrics.activity_write_failed(pending.kind)
            return None
        self.joined(pending)
        return event

    def joined(self, pending: PendingEvent) -> None:
        """A prepared event was committed by its writer's own transaction: count it, as `append` counts its own."""
        if self._metrics is not None:
            self._metrics.activity_recorded(pending.kind)

    async def session_ended(self, user_id: str, reason: str) -> None:
        kind, outcome, label = end_event(reason)
        if kind == "sign_out":
            await self.record(user_id, kind, outcome)
        else:
            await self.record(user_id, kind, outcome, reason=label)

    # What the second factors people manage (stepup/factors.py) changed.

    async def second_factor_added(self, user_id: str, method: str) -> None:
        await self.record(user_id, "second_factor_added", method=method)

    async def second_factor_removed(self, user_id: str, method: str) -> None:
        await self.record(user_id, "second_factor_removed", method=method)

    async def recent(self, user_id: str, before_seq: int | None, limit: int) -> Sequence[ActivityEvent]:
        return await self._store.list_activity(user_id, before_seq, limit)
