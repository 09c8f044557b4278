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

The per-user index (`sessions:{<user id>}`, a bounded index of the store, storage/base.py) names every session of a
user by its record's hash, with what the person's own session list shows (an opaque id, when it began, a device label,
the client address). It is what lets a session end without its id: "sign out everywhere", a FusionAuth webhook, a
changed second factor (`end_user_sessions`). It holds at most MAX_SESSIONS_PER_USER sessions (a sign-in past that ends
the least recent one), and a session leaves it as it ends; one that expired unseen is dropped when the index is next
read.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, cast, get_args

from itsdangerous import BadData

from ..activity.agents import current_client
from ..clock import Clock
from ..errors import FusionAuthError, LoginRequired, StoreUnavailable
from ..fusionauth.client import RefreshRejected
from ..ops.metrics import SessionEndReason
from ..settings import Settings
from ..storage import Store, user_key
from ..web.cookies import cookie_header, expired_cookie_header, make_serializer
from .sealing import Unsealable, open_sealed, seal

logger = logging.getLogger(__name__)

# The record's last-seen time is rewritten at most this often, so a busy session does not write on every request;
# the idle timeout is enforced to within this many seconds, in the user's favour never by more.
TOUCH_INTERVAL = 60.0

# Sessions one user may have at once (the bound of the per-user index): far more than anyone's devices. A sign-in past
# it ends the least recently started session, so neither the index nor a person's list grows without bound.
MAX_SESSIONS_PER_USER = 32

# A session's access token is refreshed at the first request this many seconds before it expires, or after: early
# enough that concurrent requests go on with a token that is still valid while one of them refreshes.
REFRESH_AHEAD = 30.0
# While FusionAuth cannot refresh (session.refresh_grace), a new try at most this often.
REFRESH_RETRY = 5.0
# Writes of a record that lose to another write are applied again to the newer record, at most this many times.
UPDATE_ATTEMPTS = 5
# The refresh gives up this long before its lock's lease ends, so that no other request can take the lock (and
# present the same one-time refresh token) while this one may still be using it.
LEASE_MARGIN = 5.0

# How long end_user_sessions() leaves word that it ran (see `_ending_key`): far longer than a sign-in or a rotation
# takes between its two looks at it.
ENDING_MARK_TTL = 300.0


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
    # Not in the repr: a record in a traceback's locals or a debug line must not print them (and the memo of opened
    # records keeps them in memory between requests).
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    refresh_token_id: str | None
    # When the access token expires (its `exp`): the record holds it, so a request learns whether a refresh is due
    # without another round trip. None in records made before refresh existed (then read from the token itself).
    expires_at: float | None = None


@dataclass(frozen=True)
class SessionRecord:
    user_id: str
    signed_in_at: float
    last_seen: float
    tokens: Tokens
    # Sealed with the rest: whoever can write to the store cannot make an old sign-in look recent.
    auth_time: float | None = None
    # The session's id in the person's own list (GET /api/sessions): random, never the cookie's session id, and kept
    # across rotations. Empty for a record made before the list existed (it gets one when next touched).
    handle: str = ""
    # What the list says about the client that signed in: its address and a short label of its user agent.
    agent: str | None = None
    address: str | None = None
    # FusionAuth could not refresh the tokens (unreachable, 5xx) since this time; the next try is not before
    # `refresh_retry_at`. The session ends session.refresh_grace seconds after the first failure.
    refresh_failing_since: float | None = None
    refresh_retry_at: float | None = None


class Refresher(Protocol):
    """What refreshes a session's tokens at FusionAuth (auth/refresh.py): new tokens, verified like the first ones;
    `RefreshRejected` when FusionAuth refuses the refresh token, `FusionAuthError` when it cannot answer."""

    async def refresh(self, user_id: str, tokens: Tokens) -> Tokens: ...

    async def revoke(self, refresh_token_id: str | None) -> None: ...


@dataclass(frozen=True)
class SessionSummary:
    """One of a person's sessions, as their own list shows it."""

    id: str  # the record's handle: opaque, not the session id
    created: float
    last_seen: float
    agent: str | None
    address: str | None
    current: bool


@dataclass(frozen=True)
class EndedSession:
    """What the end hook gets: the readable part of a record, enough to revoke its refresh token."""

    user_id: str
    refresh_token_id: str | None


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _seal_record(session_id: str, key: str, record: SessionRecord) -> str:
    sealed = seal(session_id, key, _dumps(asdict(record)).encode())
    # Readable: who it belongs to, and the refresh token's id for revocation (see the module docstring); and when it
    # was last seen, which the person's session list shows (the list has no session ids to open records with).
    return _dumps(
        {"uid": record.user_id, "rtid": record.tokens.refresh_token_id, "seen": record.last_seen, "sealed": sealed}
    )


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


# Records opened by this process and kept for their next request (at most this many; one per recently active session).
OPENED_RECORDS = 1024


class _OpenedRecords:
    """A memo of `_open_record`, keyed by the store key and the exact sealed value read under it.

    Opening a record (base64, HKDF, AES-GCM, two JSON parses) is a fifth of what an authenticated request costs, and
    the same session's record reads back byte for byte the same between two touches. The store is still read on every
    request, and a record is reused only when the value just read is identical to one this process has already
    opened and authenticated under the same key: the store key embeds SHA-256 of the session id, so the same key means
    the same session id, and `_open_record` is a function of (session id, key, value) alone. So the answer is the
    one opening it again would give; a record that was rewritten (touched, refreshed, rotated), replaced or altered in
    the store reads back different bytes and is opened and authenticated anew, and one that is gone is gone.

    What it holds in memory is what a request holds while it runs (the record's tokens), for longer: no more than
    this process can already reach, since it holds the FusionAuth API key and the cookie keys. It holds no session
    id. An entry is dropped when its session ends or rotates here, when the store no longer has the record (ended on
    another replica), and once its session has timed out (the oldest entries are looked at on every use); and there
    are at most `size` (the oldest leave first)."""

    def __init__(self, idle_timeout: float, absolute_timeout: float, size: int = OPENED_RECORDS) -> None:
        self._idle = idle_timeout
        self._absolute = absolute_timeout
        self._size = size
        # key -> (the sealed value, its record, when the record's session times out at the latest)
        self._entries: dict[str, tuple[str, SessionRecord, float]] = {}
        # How many times an entry was forgotten: a value read before the latest forget is opened but not kept, or a
        # request that read a record just before its session ended would put its tokens back after the end.
        self.forgotten = 0

    def open(self, session_id: str, key: str, raw: str, *, now: float, read_at: int) -> SessionRecord:
        """`_open_record(session_id, key, raw)`; `read_at`: `forgotten` as it was before `raw` was read."""
        self._sweep(now)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == raw:
            return entry[1]
        record = _open_record(session_id, key, raw)  # Unsealable: nothing is kept
        self._entries.pop(key, None)
        deadline = min(record.signed_in_at + self._absolute, record.last_seen + self._idle)
        if read_at == self.forgotten and now < deadline:  # a session past its timeouts is about to end: not kept
            if len(self._entries) >= self._size:
                del self._entries[next(iter(self._entries))]  # the oldest (dicts keep insertion order)
            self._entries[key] = (raw, record, deadline)
        return record

    def _sweep(self, now: float) -> None:
        # The least recently written entries come first (a rewritten record goes to the end): those whose sessions
        # have timed out leave, so that the tokens of a session nobody uses any more do not stay for long.
        while self._entries:
            key, (_, _, deadline) = next(iter(self._entries.items()))
            if now < deadline:
                return
            del self._entries[key]

    def forget(self, key: str) -> None:
        self.forgotten += 1
        self._entries.pop(key, None)


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
    return _member_key(user_id, _session_hash(session_id))


def _member_key(user_id: str, member: str) -> str:
    # The user id is the key's hash tag (storage/base.py), as it is the index's: one user's keys share a Cluster slot.
    return user_key("session", user_id, member)


def _refresh_lock_key(user_id: str, member: str) -> str:
    """Held while one request refreshes the session's tokens, on whichever worker or replica: single-flight."""
    return user_key("session-refresh", user_id, member)


def _token_expiry(access_token: str) -> float | None:
    """The `exp` of an access token verified at sign-in (a record made before refresh existed keeps none)."""
    try:
        payload = access_token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("exp")
    except (IndexError, ValueError, AttributeError):
        return None
    return float(exp) if isinstance(exp, int | float) else None


def _rotated_key(user_id: str, session_id: str) -> str:
    return user_key("session-rotated", user_id, _session_hash(session_id))


def _index_key(user_id: str) -> str:
    """The per-user index: member = the hash that names a record (`_member_key`), value = `_index_entry`."""
    return user_key("sessions", user_id)


def _ending_key(user_id: str) -> str:
    """Word that end_user_sessions() ran for this user (a fresh random value each time, the reason and the session
    kept). A sign-in or a rotation in flight reads it before and after it writes: a session whose record was written
    just after end_user_sessions() looked for it would otherwise outlive "sign out everywhere"."""
    return user_key("sessions-ending", user_id)


def _kept_key(user_id: str) -> str:
    """The session end_user_sessions() last kept for this user, and when: the session that changed a password or a
    second factor here, which FusionAuth's event about that very change must not end."""
    return user_key("sessions-kept", user_id)


def _index_entry(record: SessionRecord) -> str:
    return _dumps(
        {"id": record.handle, "created": record.signed_in_at, "agent": record.agent, "address": record.address}
    )


def _entry(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _created(raw: str) -> float:
    created = _entry(raw).get("created")
    return float(created) if isinstance(created, int | float) else 0.0


@dataclass(frozen=True)
class _Ending:
    nonce: str
    reason: SessionEndReason
    keep: str | None

    @classmethod
    def loads(cls, raw: str | None) -> _Ending | None:
        value = _entry(raw) if raw is not None else {}
        reason, keep = value.get("reason"), value.get("keep")
        if not isinstance(value.get("n"), str) or reason not in get_args(SessionEndReason):
            return None
        return cls(value["n"], cast(SessionEndReason, reason), keep if isinstance(keep, str) else None)


def _raced(before: _Ending | None, after: _Ending | None, *, kept: Iterable[str] = ()) -> _Ending | None:
    """The end_user_sessions() that ran between two reads of `_ending_key`, unless it kept this session. A mark that
    expired in between is no new end."""
    if after is None or (before is not None and before.nonce == after.nonce) or after.keep in set(kept):
        return None
    return after


class SessionManager:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        *,
        on_end: Callable[[EndedSession, SessionEndReason], Awaitable[None]] | None = None,
        refresher: Refresher | None = None,
        refresh_lease: float = 60.0,
    ) -> None:
        self._settings = settings.session
        # Without a refresher a session never refreshes (and lives on its own until its timeouts, as before).
        self._refresher = refresher
        # The refresh lock's lease: longer than every FusionAuth call a refresh makes (LEASE_MARGIN more).
        self._refresh_lease = max(refresh_lease, 2 * LEASE_MARGIN)
        self._store = store
        self._clock = clock
        # Called once for every session that ends (sign-out, replacement, a timeout noticed on use): the app revokes
        # the refresh token there, so no way of ending a session leaves a live token behind at FusionAuth.
        self._on_end = on_end
        self._secure = settings.cookie_secure
        self._serializer = make_serializer(self._settings.secret_keys, salt="stepup-bff/session", clock=clock)
        # __Host- makes the browser refuse the cookie unless it is Secure, host-only and Path=/ (ASVS 3.3.3).
        self.cookie_name = "__Host-stepup_session" if self._secure else "stepup_session"
        self._opened = _OpenedRecords(self._settings.idle_timeout, self._settings.absolute_timeout)
        self._touching: set[str] = set()  # the record keys this process is touching now (see `load`)

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
        """A new session for `user`, in the store and in the user's index; `auth_time` is when FusionAuth says the
        person signed in (a verified token's claim). LoginRequired if the user's sessions were ended
        (end_user_sessions) while it was being made."""
        now = self._clock.now()
        session_id = secrets.token_urlsafe(16)  # 128 bits from the OS CSPRNG (ASVS 7.2.3)
        if auth_time is not None:
            # Never later than now: FusionAuth's clock running ahead of ours must not make the proof last longer.
            auth_time = min(auth_time, now)
        address, agent = current_client()
        if tokens.expires_at is None:
            tokens = replace(tokens, expires_at=_token_expiry(tokens.access_token))
        record = SessionRecord(
            user_id=user.id,
            signed_in_at=now,
            last_seen=now,
            tokens=tokens,
            auth_time=auth_time,
            handle=secrets.token_urlsafe(12),
            agent=agent,
            address=address,
        )
        before = _Ending.loads(await self._store.get(_ending_key(user.id)))
        member = _session_hash(session_id)
        # The index first: a record is never without its entry, so "end every session of this user" finds it. (An
        # entry whose record was never written is dropped when next read.)
        await self._index(user.id, member, record)
        key = _member_key(user.id, member)
        await self._store.set(key, _seal_record(session_id, key, record), ttl=self._settings.absolute_timeout)
        raced = _raced(before, _Ending.loads(await self._store.get(_ending_key(user.id))))
        if raced is not None:
            await self._end(user.id, member, raced.reason)
            raise LoginRequired("Your sessions were ended while you signed in. Sign in again.")
        return self._session(session_id, user, record, step_up=None)

    async def _index(self, user_id: str, member: str, record: SessionRecord) -> None:
        """Put the session in its user's index; end whatever that pushes past MAX_SESSIONS_PER_USER."""
        evicted = await self._store.index_put(
            _index_key(user_id),
            member,
            _index_entry(record),
            rank=record.signed_in_at,
            ttl=self._settings.absolute_timeout,
            limit=MAX_SESSIONS_PER_USER,
        )
        for other in evicted:
            logger.info("session ended: user=%s has more than %d sessions", user_id, MAX_SESSIONS_PER_USER)
            await self._end(user_id, other, "too_many_sessions")

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
        member = _session_hash(session_id)
        key = _member_key(user.id, member)
        read_at = self._opened.forgotten
        raw = await self._store.get(key)  # the one store round trip of an authenticated read
        if raw is None:
            self._opened.forget(key)  # ended elsewhere (another replica, a timeout): its tokens leave this memory too
            return None  # signed out, expired, or never existed
        now = self._clock.now()
        try:
            record = self._opened.open(session_id, key, raw, now=now, read_at=read_at)
        except Unsealable as exc:
            # Only someone who can write to the store could cause this: end the session (its token is revoked).
            logger.warning("session record refused: %s", exc)
            await self._end(user.id, member, "tampered")
            return None
        if record.user_id != user.id:
            logger.warning("session cookie names a different user than its record; refused")
            return None
        if now >= record.signed_in_at + self._settings.absolute_timeout:
            logger.info("session ended: absolute timeout")
            await self._end(user.id, member, "absolute_timeout")
            return None
        if now >= record.last_seen + self._settings.idle_timeout:
            logger.info("session ended after %d s idle", int(now - record.last_seen))
            await self._end(user.id, member, "idle_timeout")
            return None
        if (
            record.refresh_failing_since is not None
            and now >= record.refresh_failing_since + self._settings.refresh_grace
        ):
            logger.warning(
                "session ended: FusionAuth could not refresh it for %d s", int(now - record.refresh_failing_since)
            )
            await self._end(user.id, member, "refresh_outage")
            return None
        # Decided from the record already in hand: a request whose token is still valid costs no round trip more.
        if self._refresh_due(record, now):
            refreshed = await self._refresh(session_id, user.id, member, record, raw, now)
            if refreshed is None:
                return None  # FusionAuth refused it, or it ended meanwhile: the signed-out answer
            record, raw = refreshed
        # One touch of a session at a time in this process: the requests the SPA sends at once (or a benchmark's 32)
        # would otherwise each queue a compare-and-set write behind the first, a burst of writes (and a pause for all
        # of them) where one suffices. The others go on with the record they read, whose timeouts were checked above.
        if now - record.last_seen >= TOUCH_INTERVAL and key not in self._touching:
            self._touching.add(key)
            try:
                touched = await self._touch(session_id, user.id, member, key, record, raw, now)
            finally:
                self._touching.discard(key)
            if touched is None:
                return None
            record = touched
        return self._session(session_id, user, record, step_up)

    async def _touch(
        self, session_id: str, user_id: str, member: str, key: str, record: SessionRecord, raw: str, now: float
    ) -> SessionRecord | None:
        """The record with `last_seen` moved to now (and a handle, if it had none), or None if it ended meanwhile."""
        unlisted = not record.handle
        handle = record.handle or secrets.token_urlsafe(12)
        # Update what was read, never re-create, never overwrite something newer: a sign-out (or a step-up's
        # rotation) that lands between the read above and this write must win, or a copy of the old cookie would
        # come back to life; and a refresh another request wrote meanwhile must stay, or its rotated refresh
        # token would be lost and the spent one presented again.
        touched = await self._update(
            session_id,
            key,
            record,
            raw,
            lambda current: replace(current, last_seen=now, handle=current.handle or handle),
            now,
            # A concurrent request of this session touched it first: nothing left to write, and no retry race
            # among a burst of requests (the SPA's first page asks several things at once).
            settled=lambda current: now - current.last_seen < TOUCH_INTERVAL and bool(current.handle),
        )
        if touched is None:
            return None
        record = touched[0]
        if unlisted:
            # A session begun before the index existed joins it the first time it is touched.
            await self._index(user_id, member, record)
        return record

    async def _update(
        self,
        session_id: str,
        key: str,
        record: SessionRecord,
        raw: str,
        change: Callable[[SessionRecord], SessionRecord],
        now: float,
        settled: Callable[[SessionRecord], bool] | None = None,
    ) -> tuple[SessionRecord, str] | None:
        """Write `change(record)` if the stored record is still `raw` (compare-and-set); if another write came first,
        apply the change to that one instead, unless `settled` says that one needs it no more. None if the session
        ended meanwhile."""
        for attempt in range(UPDATE_ATTEMPTS):
            if attempt and settled is not None and settled(record):
                return record, raw
            updated = change(record)
            sealed = _seal_record(session_id, key, updated)
            if await self._store.compare_and_set(key, raw, sealed, ttl=self._remaining(updated, now)):
                return updated, sealed
            latest = await self._store.get(key)
            if latest is None:
                return None
            try:
                record, raw = _open_record(session_id, key, latest), latest
            except Unsealable:
                return None  # the next request ends it as tampered
        raise StoreUnavailable()  # contended beyond reason: fail closed, the next request tries again

    # -- refresh ---------------------------------------------------------------------------------------------------

    def _refresh_due(self, record: SessionRecord, now: float) -> bool:
        if self._refresher is None or record.tokens.refresh_token is None:
            return False  # nothing to refresh with (a Login API sign-in without refresh tokens)
        if record.refresh_retry_at is not None:
            return now >= record.refresh_retry_at
        expires_at = record.tokens.expires_at or _token_expiry(record.tokens.access_token)
        return expires_at is not None and now >= expires_at - REFRESH_AHEAD

    async def _refresh(
        self, session_id: str, user_id: str, member: str, record: SessionRecord, raw: str, now: float
    ) -> tuple[SessionRecord, str] | None:
        """Refresh the session's tokens, once across every request, worker and replica: the record as it is now, or
        None if the session ended.

        Single-flight: a lock in the store (insert-if-absent) with a lease longer than the FusionAuth calls, which
        this refresh gives up on before the lease ends. A request that finds it taken goes on with the record it
        read, whose token is still valid or was a moment ago (REFRESH_AHEAD); it never refreshes too. The record is
        read again once the lock is held, so a refresh that finished in between is seen and a rotated refresh token
        (FusionAuth's one-time-use policy) is never presented twice."""
        assert self._refresher is not None  # noqa: S101 - _refresh_due() says so
        lock = _refresh_lock_key(user_id, member)
        if not await self._store.add(lock, "1", ttl=self._refresh_lease):
            return record, raw
        try:
            key = _member_key(user_id, member)
            latest = await self._store.get(key)
            if latest is None:
                return None  # ended while we waited for the lock
            try:
                current = _open_record(session_id, key, latest)
            except Unsealable:
                await self._end(user_id, member, "tampered")
                return None
            if not self._refresh_due(current, now):
                return current, latest  # another request refreshed it a moment ago
            try:
                async with asyncio.timeout(self._refresh_lease - LEASE_MARGIN):
                    tokens = await self._refresher.refresh(user_id, current.tokens)
            except RefreshRejected as exc:
                # Revoked, or the user may no longer sign in (locked, deactivated, deleted): over, as a sign-out is.
                logger.info("session ended: %s", exc)
                await self._end(user_id, member, "refresh_refused")
                return None
            except (FusionAuthError, TimeoutError) as exc:
                return await self._refresh_failed(session_id, key, member, current, latest, now, exc)
            written = await self._update(
                session_id,
                key,
                current,
                latest,
                lambda record: replace(
                    record, tokens=tokens, last_seen=now, refresh_failing_since=None, refresh_retry_at=None
                ),
                now,
            )
            if written is None:
                # The session ended while FusionAuth answered (a sign-out, a webhook): the refresh token it just
                # issued must not outlive it. (Revoking the old id, as the end did, covers a token reused as is.)
                if tokens.refresh_token_id != current.tokens.refresh_token_id:
                    await self._refresher.revoke(tokens.refresh_token_id)
                return None
            logger.info("session tokens refreshed: user=%s", user_id)
            return written
        finally:
            # Ours to delete: the refresh finished before the lease could end (the timeout above), so nobody else
            # holds it. If the delete fails, the lease ends it.
            with contextlib.suppress(StoreUnavailable):
                await self._store.delete(lock)

    async def _refresh_failed(
        self, session_id: str, key: str, member: str, record: SessionRecord, raw: str, now: float, exc: Exception
    ) -> tuple[SessionRecord, str] | None:
        """FusionAuth could not answer: go on within session.refresh_grace, trying again every REFRESH_RETRY s."""
        since = record.refresh_failing_since if record.refresh_failing_since is not None else now
        if now >= since + self._settings.refresh_grace:
            logger.warning("session ended: FusionAuth could not refresh it for %d s", int(now - since))
            await self._end(record.user_id, member, "refresh_outage")
            return None
        logger.warning(
            "FusionAuth could not refresh a session (%s); it goes on for %d s more",
            getattr(exc, "error_code", "timeout"),
            int(since + self._settings.refresh_grace - now),
        )
        return await self._update(
            session_id,
            key,
            record,
            raw,
            lambda current: replace(
                current, last_seen=now, refresh_failing_since=since, refresh_retry_at=now + REFRESH_RETRY
            ),
            now,
        )

    async def end(self, session: Session, *, reason: SessionEndReason) -> None:
        """Delete the record and run the end hook; atomic, so of two concurrent ends (on any replicas) only one
        runs it."""
        await self._end(session.user.id, _session_hash(session.id), reason)

    async def _end(self, user_id: str, member: str, reason: SessionEndReason) -> bool:
        """End the session `member` names (if it is still there): True if this call ended it."""
        key = _member_key(user_id, member)
        raw = await self._store.pop(key)
        self._opened.forget(key)  # its tokens leave this process's memory as the session ends
        # Cleaned as it ends. A failure here is not the end's: the record is gone, and an entry naming no record is
        # skipped and dropped wherever the index is read.
        with contextlib.suppress(StoreUnavailable):
            await self._store.index_remove(_index_key(user_id), member)
        if raw is None:
            return False
        logger.info("session ended: user=%s reason=%s", user_id, reason)
        await self._run_end_hook(raw, reason)
        return True

    async def _run_end_hook(self, raw: str, reason: SessionEndReason) -> None:
        # The hook reads only the readable part: it needs no session id, and a record that no longer opens
        # still has its refresh token revoked.
        ended = _ended(raw)
        if ended is not None and self._on_end is not None:
            await self._on_end(ended, reason)

    async def end_user_sessions(
        self,
        user_id: str,
        *,
        reason: SessionEndReason,
        keep: Session | None = None,
        signed_in_before: float | None = None,
        spare_kept_since: float | None = None,
    ) -> int:
        """End every session of `user_id` except `keep` (and, with `signed_in_before`, only those signed in before
        that time: a FusionAuth event must not end a sign-in that came after it), each through the end hook as any
        session ends (its refresh token revoked, counted and recorded with `reason`). Returns how many ended.

        Safe to repeat and to run on several replicas at once (each record is popped atomically, so each session
        ends, and is counted, once). A session being signed in or rotated meanwhile sees the word left here and
        ends itself (`create`, `rotate`).

        `spare_kept_since`: also spare the session an earlier call kept, if it kept it at that time or later (an
        event from FusionAuth about a change this BFF made, and already ended the other sessions for)."""
        if keep is not None and keep.user.id != user_id:
            raise ValueError("keep must be a session of the same user")
        kept = _session_hash(keep.id) if keep is not None else None
        if kept is not None:
            mark = _dumps({"member": kept, "at": self._clock.now()})
            await self._store.set(_kept_key(user_id), mark, ttl=ENDING_MARK_TTL)
        elif spare_kept_since is not None:
            earlier = _entry(await self._store.get(_kept_key(user_id)) or "")
            at = earlier.get("at")
            if isinstance(earlier.get("member"), str) and isinstance(at, int | float) and at >= spare_kept_since:
                kept = earlier["member"]
        if signed_in_before is None:
            # A session written right after the index is read below would be missed: leave word first.
            mark = _dumps({"n": secrets.token_urlsafe(12), "reason": reason, "keep": kept})
            await self._store.set(_ending_key(user_id), mark, ttl=ENDING_MARK_TTL)
        entries = await self._store.index_items(_index_key(user_id))
        doomed = [
            member
            for member, entry in entries.items()
            if member != kept and (signed_in_before is None or _created(entry) < signed_in_before)
        ]
        ended = await asyncio.gather(*(self._end(user_id, member, reason) for member in doomed))
        count = sum(ended)
        if count:
            logger.info("sessions ended: user=%s count=%d reason=%s", user_id, count, reason)
        return count

    async def end_sessions_holding(self, user_id: str, refresh_token_id: str, *, reason: SessionEndReason) -> int:
        """End the user's session(s) whose refresh token has this id (FusionAuth revoked that one token)."""
        entries = await self._store.index_items(_index_key(user_id))
        members = list(entries)
        raws = await asyncio.gather(*(self._store.get(_member_key(user_id, member)) for member in members))
        holding = [
            member
            for member, raw in zip(members, raws, strict=True)
            if raw is not None and (ended := _ended(raw)) is not None and ended.refresh_token_id == refresh_token_id
        ]
        count = sum(await asyncio.gather(*(self._end(user_id, member, reason) for member in holding)))
        if count:
            logger.info("sessions ended: user=%s count=%d reason=%s", user_id, count, reason)
        return count

    async def list_sessions(self, current: Session) -> list[SessionSummary]:
        """The signed-in person's sessions, newest first (`current` among them)."""
        user_id = current.user.id
        entries = await self._store.index_items(_index_key(user_id))
        members = list(entries)
        raws = await asyncio.gather(*(self._store.get(_member_key(user_id, member)) for member in members))
        this = _session_hash(current.id)
        summaries = []
        for member, raw in zip(members, raws, strict=True):
            entry = _entry(entries[member])
            envelope = _entry(raw) if raw is not None else {}
            if raw is None or envelope.get("uid") != user_id:
                # Expired without a request noticing (nothing ended it): drop it from the index now.
                with contextlib.suppress(StoreUnavailable):
                    await self._store.index_remove(_index_key(user_id), member)
                continue
            created = _created(entries[member])
            seen = envelope.get("seen")
            summaries.append(
                SessionSummary(
                    id=str(entry.get("id") or ""),
                    created=created,
                    last_seen=float(seen) if isinstance(seen, int | float) else created,
                    agent=entry.get("agent") if isinstance(entry.get("agent"), str) else None,
                    address=entry.get("address") if isinstance(entry.get("address"), str) else None,
                    current=member == this,
                )
            )
        return sorted(summaries, key=lambda summary: (summary.current, summary.created), reverse=True)

    async def end_listed(self, current: Session, handle: str, *, reason: SessionEndReason) -> bool:
        """End the signed-in person's session whose list id is `handle` (any of theirs, this one included): True if
        one ended. Another user's id finds nothing: only this user's index is searched."""
        entries = await self._store.index_items(_index_key(current.user.id))
        for member, entry in entries.items():
            found = _entry(entry).get("id")
            if isinstance(found, str) and found and secrets.compare_digest(found, handle):
                return await self._end(current.user.id, member, reason)
        return False

    async def rotate(self, session: Session, step_up: StepUp | None) -> Session:
        """Move the record to a fresh session id (ASVS 7.2.4: new id on re-authentication), sealed anew for it."""
        user_id = session.user.id
        old_member = _session_hash(session.id)
        old_key = _member_key(user_id, old_member)
        before = _Ending.loads(await self._store.get(_ending_key(user_id)))
        raw = await self._store.pop(old_key)
        self._opened.forget(old_key)
        if raw is None:
            raise LookupError("session ended while rotating")
        try:
            record = _open_record(session.id, old_key, raw)
        except Unsealable as exc:
            await self._run_end_hook(raw, "tampered")  # popped above: it has ended
            with contextlib.suppress(StoreUnavailable):
                await self._store.index_remove(_index_key(user_id), old_member)
            raise LookupError("session record refused while rotating") from exc
        new_id = secrets.token_urlsafe(16)
        new_member = _session_hash(new_id)
        now = self._clock.now()
        record = replace(record, last_seen=now, handle=record.handle or secrets.token_urlsafe(12))
        new_key = _member_key(user_id, new_member)
        try:
            # The old entry out first, so that the new one cannot push the index past its bound; then, as in create(),
            # the entry before the record. An end_user_sessions() in between is caught by the check below.
            await self._store.index_remove(_index_key(user_id), old_member)
            await self._index(user_id, new_member, record)
            await self._store.set(new_key, _seal_record(new_id, new_key, record), ttl=self._remaining(record, now))
        except StoreUnavailable:
            # The old record is taken and the new one not written (Redis refusing writes but not deletes, a timeout):
            # the session has ended, so end it as every session ends, or its refresh token stays live at FusionAuth
            # with no record left to revoke it by.
            await self._run_end_hook(raw, "store_failure")
            raise
        await self._store.set(_rotated_key(user_id, session.id), "1", ttl=ROTATION_GRACE)
        # Kept by end_user_sessions() under its old id, it is kept under the new one too.
        raced = _raced(before, _Ending.loads(await self._store.get(_ending_key(user_id))), kept=[old_member])
        if raced is not None:
            await self._end(user_id, new_member, raced.reason)
            raise LookupError("the user's sessions were ended while rotating")
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
