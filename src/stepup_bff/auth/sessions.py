"""Sessions: a signed cookie that names a server-side record.

The cookie (itsdangerous, HMAC-SHA256) carries a random 128-bit session id and who the user is, so pages can
greet them without a lookup; it never carries a token. The record in the store holds the tokens and the
timestamps that enforce the idle and absolute timeouts. Every authenticated request loads the record (one store
read), so a copied cookie is worthless once the session has ended (ASVS 7.4.1), whichever replica it reaches.

At rest (auth/sealing.py): records are keyed by a hash of the session id, so a leaked copy of the store does not
yield cookies, and everything but the user id and the refresh token's id is sealed with AES-256-GCM under a key
derived from the session id, so it does not yield tokens either. The refresh token's id stays readable because
ending a session revokes it by that id (with the API key), and not every way a session ends has the session id at
hand (a timeout noticed by another replica does; "sign out everywhere" or a FusionAuth webhook will not). An id
alone obtains nothing: revoking by id needs the API key, and no FusionAuth API turns an id into a token.
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
from ..errors import StoreUnavailable
from ..settings import Settings
from ..storage import Store, user_key
from ..web.cookies import cookie_header, expired_cookie_header, make_serializer
from .sealing import Unsealable, open_sealed, seal

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
    """A completed second factor: when, until when it counts, how, the grant to consume (single-use and bound
    step-ups) and, for a step-up bound to a transaction, that transaction's id."""

    at: float
    until: float
    method: str
    grant: str | None = None
    transaction: str | None = None


@dataclass(frozen=True)
class Session:
    id: str
    user: User
    signed_in_at: float
    expires_at: float
    idle_expires_at: float
    step_up: StepUp | None = None
    # When the person last signed in with their password, as FusionAuth vouches for it (the token's auth_time); None
    # when it did not say. Unchanged by step-ups and rotations: adding a second factor asks for a recent one.
    auth_time: float | None = None


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
    # Sealed with the rest: whoever can write to the store cannot make an old sign-in look recent.
    auth_time: float | None = None


@dataclass(frozen=True)
class EndedSession:
    """What the end hook gets: the readable part of a record, enough to revoke its refresh token."""

    user_id: str
    refresh_token_id: str | None


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _seal_record(session_id: str, key: str, record: SessionRecord) -> str:
    sealed = seal(session_id, key, _dumps(asdict(record)).encode())
    # Readable: who it belongs to, and the refresh token's id for revocation (see the module docstring).
    return _dumps({"uid": record.user_id, "rtid": record.tokens.refresh_token_id, "sealed": sealed})


def _open_record(session_id: str, key: str, raw: str) -> SessionRecord:
    """The record, or Unsealable if it is not this session's (moved, altered, another format)."""
    try:
        envelope = json.loads(raw)
        data = json.loads(open_sealed(session_id, key, envelope["sealed"]))
        # Fields a newer release added are left out, so that a replica of this release reads its records while a
        # rolling upgrade runs (as challenges do, stepup/challenge.py).
        known = {name: value for name, value in data.items() if name in SessionRecord.__dataclass_fields__}
        record = SessionRecord(**{**known, "tokens": Tokens(**data["tokens"])})
    except (ValueError, KeyError, TypeError) as exc:
        raise Unsealable("not a session record") from exc
    # The readable copies must say what the sealed part says, or the end hook could be pointed elsewhere.
    if (envelope.get("uid"), envelope.get("rtid")) != (record.user_id, record.tokens.refresh_token_id):
        raise Unsealable("readable fields differ from the sealed ones")
    return record


def _ended(raw: str) -> EndedSession | None:
    try:
        envelope = json.loads(raw)
        return EndedSession(user_id=str(envelope["uid"]), refresh_token_id=envelope.get("rtid"))
    except (ValueError, KeyError, TypeError):
        return None


# How long a rotated-away session id is remembered. A request that left the browser with the old cookie just
# before the rotation is answered after it; it must not tell the browser to delete the new cookie.
ROTATION_GRACE = 60.0


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _record_key(user_id: str, session_id: str) -> str:
    # The user id is the key's hash tag (storage/base.py), ready for a per-user index on Redis Cluster.
    return user_key("session", user_id, _session_hash(session_id))


def _rotated_key(user_id: str, session_id: str) -> str:
    return user_key("session-rotated", user_id, _session_hash(session_id))


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        *,
        on_end: Callable[[EndedSession, SessionEndReason], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings.session
        self._store = store
        self._clock = clock
        # Called once for every session that ends (sign-out, replacement, a timeout noticed on use): the app revokes
        # the refresh token there, so no way of ending a session leaves a live token behind at FusionAuth.
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
            # Unset fields are left out: a cookie keeps the shape older releases read, unless it needs the new field.
            payload["su"] = {key: value for key, value in asdict(session.step_up).items() if value is not None}
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

    async def create(self, user: User, tokens: Tokens, *, auth_time: float | None = None) -> Session:
        """A new session; `auth_time` is when FusionAuth says the person signed in (a verified token's claim)."""
        now = self._clock.now()
        session_id = secrets.token_urlsafe(16)  # 128 bits from the OS CSPRNG (ASVS 7.2.3)
        if auth_time is not None:
            # Never later than now: FusionAuth's clock running ahead of ours must not make the proof last longer.
            auth_time = min(auth_time, now)
        record = SessionRecord(user_id=user.id, signed_in_at=now, last_seen=now, tokens=tokens, auth_time=auth_time)
        key = _record_key(user.id, session_id)
        await self._store.set(key, _seal_record(session_id, key, record), ttl=self._settings.absolute_timeout)
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
        # The cookie's user id is part of the key: a cookie naming another user finds no record.
        key = _record_key(user.id, session_id)
        raw = await self._store.get(key)  # the one store round trip of an authenticated read
        if raw is None:
            return None  # signed out, expired, or never existed
        try:
            record = _open_record(session_id, key, raw)
        except Unsealable as exc:
            # Only someone who can write to the store could cause this: end the session (its token is revoked).
            logger.warning("session record refused: %s", exc)
            await self._end(key, "tampered")
            return None
        now = self._clock.now()
        if record.user_id != user.id:
            logger.warning("session cookie names a different user than its record; refused")
            return None
        if now >= record.signed_in_at + self._settings.absolute_timeout:
            logger.info("session ended: absolute timeout")
            await self._end(key, "absolute_timeout")
            return None
        if now >= record.last_seen + self._settings.idle_timeout:
            logger.info("session ended after %d s idle", int(now - record.last_seen))
            await self._end(key, "idle_timeout")
            return None
        if now - record.last_seen >= TOUCH_INTERVAL:
            record = replace(record, last_seen=now)
            # Update, never re-create: a sign-out (or step-up rotation) that lands between the read above and this
            # write must win, or a copy of the old cookie would come back to life.
            sealed = _seal_record(session_id, key, record)
            if not await self._store.replace(key, sealed, ttl=self._remaining(record, now)):
                return None
        return self._session(session_id, user, record, step_up)

    async def end(self, session: Session, *, reason: SessionEndReason) -> None:
        """Delete the record and run the end hook; atomic, so of two concurrent ends (on any replicas) only one
        runs it."""
        await self._end(_record_key(session.user.id, session.id), reason)

    async def _end(self, key: str, reason: SessionEndReason) -> None:
        raw = await self._store.pop(key)
        if raw is not None:
            await self._run_end_hook(raw, reason)

    async def _run_end_hook(self, raw: str, reason: SessionEndReason) -> None:
        # The hook reads only the readable part: it needs no session id, and a record that no longer opens
        # still has its refresh token revoked.
        ended = _ended(raw)
        if ended is not None and self._on_end is not None:
            await self._on_end(ended, reason)

    async def rotate(self, session: Session, step_up: StepUp | None) -> Session:
        """Move the record to a fresh session id (ASVS 7.2.4: new id on re-authentication), sealed anew for it."""
        old_key = _record_key(session.user.id, session.id)
        raw = await self._store.pop(old_key)
        if raw is None:
            raise LookupError("session ended while rotating")
        try:
            record = _open_record(session.id, old_key, raw)
        except Unsealable as exc:
            await self._run_end_hook(raw, "tampered")  # popped above: it has ended
            raise LookupError("session record refused while rotating") from exc
        new_id = secrets.token_urlsafe(16)
        now = self._clock.now()
        record = replace(record, last_seen=now)
        new_key = _record_key(session.user.id, new_id)
        try:
            await self._store.set(new_key, _seal_record(new_id, new_key, record), ttl=self._remaining(record, now))
        except StoreUnavailable:
            # The old record is taken and the new one not written (Redis refusing writes but not deletes, a timeout):
            # the session has ended, so end it as every session ends, or its refresh token stays live at FusionAuth
            # with no record left to revoke it by.
            await self._run_end_hook(raw, "store_failure")
            raise
        await self._store.set(_rotated_key(session.user.id, session.id), "1", ttl=ROTATION_GRACE)
        return self._session(new_id, session.user, record, step_up)

    async def should_clear(self, cookie: str) -> bool:
        """Whether a cookie that named no live session should be deleted from the browser: yes, unless its session
        was rotated a moment ago (then the browser already holds the new cookie, set by the rotating answer).
        The old id stays refused either way."""
        payload = self._decode(cookie)
        if payload is None or "sid" not in payload or "uid" not in payload:
            return True
        return await self._store.get(_rotated_key(str(payload["uid"]), str(payload["sid"]))) is None

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
            auth_time=record.auth_time,
        )
