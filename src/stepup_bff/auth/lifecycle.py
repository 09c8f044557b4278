"""What FusionAuth's events do to sessions: the user's standing at FusionAuth, applied at once (docs/fusionauth.md §14).

Each verified event (fusionauth/webhooks.py) is taken once: its `event.id` is kept in the store for DEDUPE_TTL
(FusionAuth documents duplicates), and an event older than that is ignored, since a duplicate of it could no longer
be recognised. Then, by type:

    user.deactivate, user.delete(.complete)        end every session of the user
    jwt.refresh-token.revoke                       one token: the session holding it; a user's (for this
                                                   application): all of theirs
    user.password.update, .reset.success           end the user's other sessions and void their step-ups (these and
    user.two-factor.method.add, .remove            the two-factor events need FusionAuth's Enterprise plan)
    user.action (a login-preventing action)        end every session of the user
    anything else                                  nothing (answered 2xx all the same)

Every effect ends only sessions signed in before the event (CLOCK_SKEW allowed for): a sign-in that came after it
holds tokens FusionAuth issued after it, and a replayed event cannot end it. "Other" sessions: FusionAuth's event
names no session of ours, so every session signed in before it ends, except the one this BFF kept when it made that
very change itself (SessionManager.end_user_sessions(keep=...)). An application-wide revoke (every user's tokens) has
no index to walk: each session ends at its next refresh, within the access token's lifetime.

The effects are idempotent (ending what has ended is nothing), so running one twice (two replicas receiving the same
event before either recorded it) does no harm either.
"""

from __future__ import annotations

import logging
from typing import Literal

from ..clock import Clock
from ..errors import FusionAuthError
from ..fusionauth.client import FusionAuthClient
from ..fusionauth.webhooks import Event
from ..ops.metrics import SessionEndReason
from ..settings import Settings
from ..stepup.service import StepUpService
from ..storage import Store
from .sessions import SessionManager

logger = logging.getLogger(__name__)

# FusionAuth retries a failed delivery at once, a few times (docs/fusionauth.md §14): a day is far past that.
DEDUPE_TTL = 24 * 3600.0
# How far FusionAuth's clock and ours may disagree: a session signed in this long after an event still counts as
# before it.
CLOCK_SKEW = 10.0
# The session this BFF kept while it changed a password or second factor itself, spared by FusionAuth's event about
# that change if it was kept at most this long before the event was created.
OWN_CHANGE_WINDOW = 30.0

_ENDS_ALL: dict[str, SessionEndReason] = {
    "user.deactivate": "user_deactivated",
    "user.delete": "user_deleted",
    "user.delete.complete": "user_deleted",
}
_ENDS_OTHERS: dict[str, SessionEndReason] = {
    "user.password.update": "password_changed",
    "user.password.reset.success": "password_changed",
    "user.two-factor.method.add": "factors_changed",
    "user.two-factor.method.remove": "factors_changed",
}
HANDLED = frozenset({*_ENDS_ALL, *_ENDS_OTHERS, "jwt.refresh-token.revoke", "user.action"})

Admission = Literal["apply", "duplicate", "ignored"]


class SessionLifecycle:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        sessions: SessionManager,
        step_up: StepUpService,
        fusionauth: FusionAuthClient,
        clock: Clock,
    ) -> None:
        self._application_id = str(settings.fusionauth.application_id)
        self._tenant_id = str(settings.fusionauth.tenant_id) if settings.fusionauth.tenant_id else None
        self._store = store
        self._sessions = sessions
        self._step_up = step_up
        self._fusionauth = fusionauth
        self._clock = clock

    async def admit(self, event: Event) -> Admission:
        """Whether to apply `event`: once per event id, only for our tenant, only for types we act on."""
        if event.type not in HANDLED:
            return "ignored"  # answered 2xx: a newly enabled event type must never fail FusionAuth's operation
        if self._tenant_id is not None and event.tenant_id is not None and event.tenant_id != self._tenant_id:
            return "ignored"
        if event.created_at is not None and event.created_at < self._clock.now() - DEDUPE_TTL:
            return "ignored"  # older than we remember ids: it could be a replay of one we applied
        # Insert-if-absent: of two deliveries of one event (on any replicas), exactly one applies it.
        if not await self._store.add(f"webhook-event:{event.id}", event.type, ttl=DEDUPE_TTL):
            return "duplicate"
        return "apply"

    async def forget(self, event: Event) -> None:
        """Let a delivery of `event` be applied again (its effect could not run)."""
        await self._store.delete(f"webhook-event:{event.id}")

    async def apply(self, event: Event) -> int:
        """Run the event's effect: how many sessions it ended."""
        user_id = event.user_id
        if user_id is None and event.type != "jwt.refresh-token.revoke":
            logger.warning("webhook %s (%s) names no user; nothing to do", event.id, event.type)
            return 0
        before = (event.created_at if event.created_at is not None else self._clock.now()) + CLOCK_SKEW
        if event.type in _ENDS_ALL:
            assert user_id is not None  # noqa: S101 - checked above
            return await self._end_all(event, user_id, _ENDS_ALL[event.type], before)
        if event.type in _ENDS_OTHERS:
            assert user_id is not None  # noqa: S101
            return await self._end_others(event, user_id, _ENDS_OTHERS[event.type], before)
        if event.type == "jwt.refresh-token.revoke":
            return await self._revoked(event, user_id, before)
        assert user_id is not None  # noqa: S101
        return await self._user_action(event, user_id, before)

    async def _end_all(self, event: Event, user_id: str, reason: SessionEndReason, before: float) -> int:
        ended = await self._sessions.end_user_sessions(user_id, reason=reason, signed_in_before=before)
        logger.info("webhook %s (%s): user=%s sessions ended=%d", event.id, event.type, user_id, ended)
        return ended

    async def _end_others(self, event: Event, user_id: str, reason: SessionEndReason, before: float) -> int:
        created = event.created_at if event.created_at is not None else self._clock.now()
        ended = await self._sessions.end_user_sessions(
            user_id, reason=reason, signed_in_before=before, spare_kept_since=created - OWN_CHANGE_WINDOW
        )
        # A step-up completed with the old password or factors proves nothing about the new ones.
        await self._step_up.void_step_ups(user_id, before)
        logger.info("webhook %s (%s): user=%s sessions ended=%d, step-ups voided", event.id, event.type, user_id, ended)
        return ended

    async def _revoked(self, event: Event, user_id: str | None, before: float) -> int:
        application = event.string("applicationId")
        if application is not None and application != self._application_id:
            return 0  # another application's tokens
        token_id = event.string("refreshToken", "id")
        if user_id is not None and token_id is not None:
            ended = await self._sessions.end_sessions_holding(user_id, token_id, reason="tokens_revoked")
        elif user_id is not None:
            ended = await self._sessions.end_user_sessions(user_id, reason="tokens_revoked", signed_in_before=before)
        else:
            # Every token of this application: no index of all users to walk. Each session ends when it next
            # refreshes (FusionAuth refuses the token), within the access token's lifetime.
            logger.info("webhook %s: every refresh token of the application revoked; sessions end at refresh", event.id)
            return 0
        logger.info("webhook %s (%s): user=%s sessions ended=%d", event.id, event.type, user_id, ended)
        return ended

    async def _user_action(self, event: Event, user_id: str, before: float) -> int:
        if event.string("phase") in ("cancel", "end"):
            return 0  # the action is over: nothing to end (a sign-in is possible again)
        applications = event.body.get("applicationIds")
        if isinstance(applications, list) and applications and self._application_id not in applications:
            return 0  # an action on other applications only
        action_id = event.string("actionId")
        try:
            prevents = await self._fusionauth.prevents_login(action_id) if action_id else None
        except FusionAuthError:
            prevents = None
        if prevents is False:
            return 0
        if prevents is None:
            # The event does not say whether the action prevents login, and FusionAuth could not tell us: fail closed.
            logger.warning("webhook %s: cannot tell whether user action %s prevents login; ending", event.id, action_id)
        return await self._end_all(event, user_id, "login_prevented", before)
