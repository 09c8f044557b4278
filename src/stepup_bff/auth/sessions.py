"""Sessions: a signed cookie that names a server-side record.

The cookie (itsdangerous, HMAC-SHA256) carries a random 128-bit session id and who the user is, so pages can
greet them without a lookup; it never carries a token. The record in the store holds the tokens and the
timestamps that enforce the idle and absolute timeouts. Every authenticated request loads the record, so a
copied cookie is worthless once the session has ended (ASVS 7.4.1). Records are keyed by a hash of the session
id: a leaked copy of the store does not yield cookies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from itsdangerous import BadData

from ..clock import Clock
from ..settings import Settings
from ..storage import Store
from ..web.cookies import cookie_header, expired_cookie_header, make_serializer

if TYPE_CHECKING:
    from ..ops.metrics import SessionEndReason

logger = logging.getLogger(__name__)

# The record's last-seen time is rewritten at most this often, so a busy session does not write on every request;
# the idle timeout is enforced to within this many seconds, in the user's favour never by more.
TOUCH_INTERVAL = 60.0


@dataclass(frozen=True)
class User:
    id: str
    email: str | None
    name: str


@dataclass(frozen=True)
class StepUp:
    """A completed second factor: when, until when it counts, how, and (single-use mode) the grant to consume."""

    at: float
    until: float
    method: str
    grant: str | None = None


@dataclass(frozen=True)
class Session:
    id: str
    user: User
    signed_in_at: float
    expires_at: float
    idle_expires_at: float
    step_up: StepUp | None = None


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str | None
    refresh_token_id: str | None


@dataclass(frozen=True)
class SessionRecord:
    user_id: str
    signed_in_at: float
    last_seen: float
    tokens: Tokens

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> SessionRecord:
        data = json.loads(raw)
        return cls(**{**data, "tokens": Tokens(**data["tokens"])})


# How long a rotated-away session id is remembered. A request that left the browser with the old cookie just
# before the rotation is answered after it; it must not tell the browser to delete the new cookie.
ROTATION_GRACE = 60.0


def _record_key(session_id: str) -> str:
    return "session:" + hashlib.sha256(session_id.encode()).hexdigest()


def _rotated_key(session_id: str) -> str:
    return "session-rotated:" + hashlib.sha256(session_id.encode()).hexdigest()


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        *,
        on_end: Callable[[SessionRecord, SessionEndReason], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings.session
        self._store = store
        self._clock = clock
        # Called once for every session that ends (sign-out, replacement, a timeout noticed on use), with why: the app
        # revokes the refresh token there, so no way of ending a session leaves a live token behind at FusionAuth.
        self._on_end = on_end
        self._secure = settings.cookie_secure
        self._serializer = make_serializer(self._settings.secret_keys, salt="stepup-bff/session", clock=clock)
        # __Host- makes the browser refuse the cookie unless it is Secure, host-only and Path=/ (ASVS 3.3.3).
        self.cookie_name = "__Host-stepup_session" if self._secure else "stepup_session"

    # -- cookie ----------------------------------------------------------------------------------------------------

    def _encode(self, session: Session) -> str:
        payload: dict[str, Any] = {
            "sid": session.id,
            "uid": session.user.id,
            "email": session.user.email,
            "name": session.user.name,
            "iat": session.signed_in_at,
        }
        if session.step_up is not None:
            payload["su"] = asdict(session.step_up)
        return self._serializer.dumps(payload)

    def _decode(self, value: str) -> dict[str, Any] | None:
        try:
            payload = self._serializer.loads(value, max_age=self._settings.absolute_timeout)
        except BadData:  # bad signature, unknown key, expired timestamp, garbage
            return None
        return payload if isinstance(payload, dict) else None

    def set_cookie_header(self, session: Session) -> str:
        max_age = max(0, int(session.expires_at - self._clock.now()))
        return cookie_header(self.cookie_name, self._encode(session), max_age=max_age, secure=self._secure)

    def clear_cookie_header(self) -> str:
        return expired_cookie_header(self.cookie_name, secure=self._secure)

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    async def create(self, user: User, tokens: Tokens) -> Session:
        now = self._clock.now()
        session_id = secrets.token_urlsafe(16)  # 128 bits from the OS CSPRNG (ASVS 7.2.3)
        record = SessionRecord(user_id=user.id, signed_in_at=now, last_seen=now, tokens=tokens)
        await self._store.set(_record_key(session_id), record.dumps(), ttl=self._settings.absolute_timeout)
        return self._session(session_id, user, record, step_up=None)

    async def load(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        payload = self._decode(cookie)
        if payload is None:
            logger.info("session cookie rejected: bad signature or too old")
            return None
        try:
            session_id = str(payload["sid"])
            user = User(id=str(payload["uid"]), email=payload.get("email"), name=str(payload["name"]))
            step_up = StepUp(**payload["su"]) if payload.get("su") else None
        except (KeyError, TypeError):
            return None
        key = _record_key(session_id)
        raw = await self._store.get(key)
        if raw is None:
            return None  # signed out, expired, or never existed
        record = SessionRecord.loads(raw)
        now = self._clock.now()
        if record.user_id != user.id:
            logger.warning("session cookie names a different user than its record; refused")
            return None
        if now >= record.signed_in_at + self._settings.absolute_timeout:
            logger.info("session ended: absolute timeout")
            await self.end(session_id, reason="absolute_timeout")
            return None
        if now >= record.last_seen + self._settings.idle_timeout:
            logger.info("session ended after %d s idle", int(now - record.last_seen))
            await self.end(session_id, reason="idle_timeout")
            return None
        if now - record.last_seen >= TOUCH_INTERVAL:
            record = replace(record, last_seen=now)
            # Update, never re-create: a sign-out (or step-up rotation) that lands between the read above and this
            # write must win, or a copy of the old cookie would come back to life.
            if not await self._store.replace(key, record.dumps(), ttl=self._remaining(record, now)):
                return None
        return self._session(session_id, user, record, step_up)

    async def end(self, session_id: str, *, reason: SessionEndReason) -> None:
        """Delete the record and run the end hook; atomic, so of two concurrent ends only one runs it."""
        raw = await self._store.pop(_record_key(session_id))
        if raw is not None and self._on_end is not None:
            await self._on_end(SessionRecord.loads(raw), reason)

    async def rotate(self, session: Session, step_up: StepUp | None) -> Session:
        """Move the record to a fresh session id (ASVS 7.2.4: new id on re-authentication)."""
        raw = await self._store.pop(_record_key(session.id))
        if raw is None:
            raise LookupError("session ended while rotating")
        record = SessionRecord.loads(raw)
        new_id = secrets.token_urlsafe(16)
        now = self._clock.now()
        record = replace(record, last_seen=now)
        await self._store.set(_record_key(new_id), record.dumps(), ttl=self._remaining(record, now))
        await self._store.set(_rotated_key(session.id), "1", ttl=ROTATION_GRACE)
        return self._session(new_id, session.user, record, step_up)

    async def should_clear(self, cookie: str) -> bool:
        """Whether a cookie that named no live session should be deleted from the browser: yes, unless its session
        was rotated a moment ago (then the browser already holds the new cookie, set by the rotating answer).
        The old id stays refused either way."""
        payload = self._decode(cookie)
        if payload is None or "sid" not in payload:
            return True
        return await self._store.get(_rotated_key(str(payload["sid"]))) is None

    def _remaining(self, record: SessionRecord, now: float) -> float:
        return max(1.0, record.signed_in_at + self._settings.absolute_timeout - now)

    def _session(self, session_id: str, user: User, record: SessionRecord, step_up: StepUp | None) -> Session:
        return Session(
            id=session_id,
            user=user,
            signed_in_at=record.signed_in_at,
            expires_at=record.signed_in_at + self._settings.absolute_timeout,
            idle_expires_at=min(
                record.last_seen + self._settings.idle_timeout,
                record.signed_in_at + self._settings.absolute_timeout,
            ),
            step_up=step_up,
        )
