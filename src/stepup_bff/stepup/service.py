"""Step-up through FusionAuth's two-factor API: start -> (send) -> finish, and the guard for privileged routes.

Security properties, and the line that enforces each:
- FusionAuth's `twoFactorId` and start `code` never leave the server: the challenge record lives in the store;
  the start code is not even parsed (fusionauth.TwoFactorStart).
- The user is always the session's: `userId` comes from the session, and FusionAuth's answer must name the same
  user and echo the state that binds the challenge to this session.
- Wrong codes are counted server-side per challenge and per user, so neither an older cookie nor a fresh
  challenge restores attempts (ASVS 6.3.1, NIST 800-63B 5.2.2; Transaction Authorization CS 2.4).
- One finish at a time per user, across all their sessions and challenges (a store lock): the per-user failure
  count is read before FusionAuth is asked and counted after it answers, so without the lock overlapping finishes
  would all pass the check. It also means that of concurrent finishes of one challenge at most one succeeds.
- Success rotates the session id (ASVS 7.2.4) and records `{at, until, method}` in the signed cookie.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from ..auth.sessions import Session, SessionManager, StepUp, User
from ..clock import Clock
from ..errors import (
    ChallengeExpired,
    FusionAuthError,
    InsufficientUserAuthentication,
    InvalidCode,
    InvalidMethod,
    LoginRequired,
    NoChallenge,
    NoSecondFactor,
    ResendTooSoon,
    StepUpBlocked,
    StepUpInProgress,
    StepUpLocked,
    StepUpRejected,
    TooManySends,
    TooManyStarts,
)
from ..fusionauth.client import FusionAuthClient, TwoFactorFailed, TwoFactorMethod
from ..settings import StepUpSettings
from ..storage import Store, user_key

logger = logging.getLogger(__name__)

SENDABLE = ("email", "sms")
TOMBSTONE = 600.0  # seconds a finished-by-time challenge is remembered, to say "expired" rather than "none"
# The consecutive-failure count is kept this long after the first failure of a run (a success clears it). NIST
# counts failures "in a row" without a time limit; a year stands in for "until someone resets it".
CONSECUTIVE_MEMORY = 365 * 24 * 3600.0


@dataclass(frozen=True)
class Method:
    id: str
    method: str
    hint: str
    last_used: bool


@dataclass(frozen=True)
class Challenge:
    id: str  # our random id: names counters and locks, and travels in FusionAuth's `state`
    two_factor_id: str  # FusionAuth's; a secret that stays here
    user_id: str
    methods: list[Method]
    expires_at: float

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Challenge:
        data = json.loads(raw)
        return cls(**{**data, "methods": [Method(**method) for method in data["methods"]]})


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def mask_phone(number: str) -> str:
    digits = [ch for ch in number if ch.isdigit()]
    return "•••" + "".join(digits[-4:]) if len(digits) >= 4 else "•••"


def _method(method: TwoFactorMethod) -> Method:
    if method.method == "email" and method.email:
        hint = mask_email(method.email)
    elif method.method == "sms" and method.mobilePhone:
        hint = mask_phone(method.mobilePhone)
    elif method.method == "authenticator":
        hint = method.name or "Authenticator app"
    else:
        hint = method.name or method.method
    return Method(id=method.id, method=method.method, hint=hint, last_used=method.lastUsed)


def _session_binding(session_id: str) -> str:
    # FusionAuth sees a hash of the session id, never the id itself (which is a bearer secret).
    return hashlib.sha256(b"stepup-bff/challenge:" + session_id.encode()).hexdigest()


class StepUpService:
    def __init__(
        self,
        settings: StepUpSettings,
        store: Store,
        fusionauth: FusionAuthClient,
        sessions: SessionManager,
        clock: Clock,
        *,
        lock_ttl: float = 30.0,
    ) -> None:
        self._settings = settings
        # Must outlast the FusionAuth call made under the lock, or a second finish could slip in beside it.
        self._lock_ttl = lock_ttl
        self._store = store
        self._fusionauth = fusionauth
        self._sessions = sessions
        self._clock = clock

    # -- keys: each is the user's (their id is the hash tag, storage/base.py), so every replica counts the same ------

    @staticmethod
    def _challenge_key(session: Session) -> str:
        return user_key("challenge", session.user.id, _session_binding(session.id))

    @staticmethod
    def _failures_key(user_id: str) -> str:
        return user_key("failures", user_id)

    @staticmethod
    def _consecutive_key(user_id: str) -> str:
        return user_key("consecutive-failures", user_id)

    @staticmethod
    def _grant_key(user_id: str, grant: str) -> str:
        return user_key("grant", user_id, grant)

    @staticmethod
    def _per_challenge_key(kind: str, challenge: Challenge) -> str:
        return user_key(kind, challenge.user_id, challenge.id)

    # -- the flow --------------------------------------------------------------------------------------------------

    async def start(self, session: Session) -> Challenge:
        await self._refuse_if_blocked(session.user)
        # Each start is an API-keyed call to FusionAuth and a fresh challenge: cap them per user.
        starts_key = user_key("starts", session.user.id)
        if await self._store.incr(starts_key, ttl=self._settings.failure_window) > self._settings.max_starts:
            raise TooManyStarts(retry_after=await self._retry_after(starts_key))
        challenge_id = secrets.token_urlsafe(16)
        state = {"challengeId": challenge_id, "session": _session_binding(session.id)}
        try:
            started = await self._fusionauth.start_two_factor(user_id=session.user.id, state=state)
        except TwoFactorFailed as exc:
            raise self._map_failure(exc, "start") from exc
        if not started.methods:
            # The start code would still work as an out-of-band code, but this product has no channel of its own
            # to deliver it, and it must never reach the browser.
            raise NoSecondFactor()
        challenge = Challenge(
            id=challenge_id,
            two_factor_id=started.twoFactorId,
            user_id=session.user.id,
            methods=[_method(method) for method in started.methods],
            expires_at=self._clock.now() + self._settings.challenge_ttl,
        )
        # Starting again replaces the previous challenge; its counters die with their own expiry, and the
        # per-user failure count is untouched.
        await self._store.set(
            self._challenge_key(session), challenge.dumps(), ttl=self._settings.challenge_ttl + TOMBSTONE
        )
        logger.info(
            "step-up started: user=%s methods=%s", session.user.id, ",".join(m.method for m in challenge.methods)
        )
        return challenge

    async def send(self, session: Session, method_id: str) -> tuple[Method, int, int]:
        """Send a code by email/SMS. Returns the method, seconds until another send, and sends remaining."""
        await self._refuse_if_blocked(session.user)
        challenge = await self._live_challenge(session)
        method = next((m for m in challenge.methods if m.id == method_id), None)
        if method is None or method.method not in SENDABLE:
            raise InvalidMethod()
        # Per user, not per challenge: starting a new challenge must not buy another email or text message.
        cooldown_key = user_key("send-cooldown", session.user.id)
        if not await self._store.add(cooldown_key, "1", ttl=self._settings.resend_cooldown):
            raise ResendTooSoon(retry_after=await self._retry_after(cooldown_key))
        sends = await self._store.incr(
            self._per_challenge_key("sends", challenge), ttl=self._settings.challenge_ttl + TOMBSTONE
        )
        if sends > self._settings.max_sends:
            raise TooManySends()
        try:
            await self._fusionauth.send_two_factor_code(two_factor_id=challenge.two_factor_id, method_id=method.id)
        except TwoFactorFailed as exc:
            raise self._map_failure(exc, "send") from exc
        except FusionAuthError:
            # Nothing was sent: let the person try again straight away.
            await self._store.delete(cooldown_key)
            raise
        await self._store.set(
            self._per_challenge_key("sent", challenge), method.method, ttl=self._settings.challenge_ttl
        )
        logger.info("step-up code sent: user=%s method=%s", session.user.id, method.method)
        return method, self._settings.resend_cooldown, self._settings.max_sends - sends

    async def finish(
        self, session: Session, code: str, ip_address: str | None, method_id: str | None = None
    ) -> Session:
        """Check the code with FusionAuth; on success return the rotated, stepped-up session.

        `method_id` (optional) says which method the person used; FusionAuth accepts any valid code of the user
        without saying which, so it only labels the result and grants nothing."""
        lock = user_key("finish-lock", session.user.id)
        if not await self._store.add(lock, "1", ttl=self._lock_ttl):
            raise StepUpInProgress()
        try:
            return await self._finish_locked(session, code, ip_address, method_id)
        finally:
            await self._store.delete(lock)

    async def _finish_locked(self, session: Session, code: str, ip: str | None, method_id: str | None) -> Session:
        # Checked under the lock: a finish that held it before us may have just reached the limit.
        await self._refuse_if_blocked(session.user)
        challenge = await self._live_challenge(session)
        try:
            result = await self._fusionauth.complete_two_factor(
                two_factor_id=challenge.two_factor_id, code=code, ip_address=ip
            )
        except TwoFactorFailed as exc:
            if exc.status == 421:
                raise await self._wrong_code(session, challenge) from exc
            raise self._map_failure(exc, "finish") from exc
        state = result.state or {}
        if result.user.id != session.user.id or state.get("challengeId") != challenge.id:
            # FusionAuth vouched for someone else, or for another challenge: never elevate on that.
            logger.error("step-up answer does not match the challenge: user or state differs; refused")
            await self._store.delete(self._challenge_key(session))
            raise FusionAuthError("The sign-in service gave an answer for a different step-up.")
        if await self._store.pop(self._challenge_key(session)) is None:
            raise NoChallenge()  # consumed meanwhile (cancelled or replaced): do not elevate
        await self._store.delete(self._failures_key(session.user.id))
        await self._store.delete(self._consecutive_key(session.user.id))
        method = await self._used_method(challenge, method_id)
        now = self._clock.now()
        grant = None
        if self._settings.single_use:
            grant = secrets.token_urlsafe(16)
            await self._store.set(self._grant_key(session.user.id, grant), session.user.id, ttl=self._settings.max_age)
        step_up = StepUp(at=now, until=now + self._settings.max_age, method=method, grant=grant)
        try:
            rotated = await self._sessions.rotate(session, step_up)
        except LookupError as exc:
            raise LoginRequired("Your session ended during the step-up. Sign in again.") from exc
        logger.info("step-up completed: user=%s method=%s", session.user.id, method)
        return rotated

    async def cancel(self, session: Session) -> None:
        await self._store.delete(self._challenge_key(session))

    # -- the guard -------------------------------------------------------------------------------------------------

    def is_fresh(self, step_up: StepUp, max_age: int) -> bool:
        now = self._clock.now()
        return now < step_up.until and now - step_up.at < max_age

    async def status(self, session: Session) -> StepUp | None:
        """The step-up that the next privileged request would accept, if any."""
        step_up = session.step_up
        if step_up is None or not self.is_fresh(step_up, self._settings.max_age):
            return None
        if self._settings.single_use and (
            step_up.grant is None or await self._store.get(self._grant_key(session.user.id, step_up.grant)) is None
        ):
            return None
        return step_up

    async def authorize(self, session: Session, max_age: int) -> Callable[[], Awaitable[None]] | None:
        """Let a privileged request through, or raise the RFC 9470 challenge.

        In single-use mode the grant is consumed here, and the returned callable puts it back: FastAPI runs
        dependencies before it reports invalid input, and a request refused for its input did nothing, so it
        must not cost the person their step-up."""
        step_up = session.step_up
        if step_up is None or not self.is_fresh(step_up, max_age):
            raise InsufficientUserAuthentication(max_age=max_age)
        if not self._settings.single_use:
            return None
        # Consumed atomically: of two requests riding one grant, exactly one gets through.
        key = self._grant_key(session.user.id, step_up.grant) if step_up.grant else None
        owner = await self._store.pop(key) if key else None
        if key is None or owner != session.user.id:
            raise InsufficientUserAuthentication(max_age=max_age)

        async def restore() -> None:
            remaining = step_up.until - self._clock.now()
            if remaining > 0:
                await self._store.add(key, owner, ttl=remaining)

        return restore

    # -- helpers ---------------------------------------------------------------------------------------------------

    async def _retry_after(self, key: str) -> int:
        """Whole seconds until `key` expires (at least 1): the `retry_after` of a 429 counted under it."""
        remaining = await self._store.ttl(key)
        return max(1, round(remaining or 1))

    async def _live_challenge(self, session: Session) -> Challenge:
        raw = await self._store.get(self._challenge_key(session))
        if raw is None:
            raise NoChallenge()
        challenge = Challenge.loads(raw)
        if challenge.user_id != session.user.id:
            raise NoChallenge()
        if self._clock.now() >= challenge.expires_at:
            await self._store.delete(self._challenge_key(session))
            raise ChallengeExpired()
        return challenge

    async def _refuse_if_blocked(self, user: User) -> None:
        consecutive = await self._store.get(self._consecutive_key(user.id))
        if consecutive is not None and int(consecutive) >= self._settings.max_consecutive_failures:
            raise StepUpLocked()
        key = self._failures_key(user.id)
        failures = await self._store.get(key)
        if failures is not None and int(failures) >= self._settings.max_failures:
            raise StepUpBlocked(retry_after=await self._retry_after(key))

    async def _wrong_code(self, session: Session, challenge: Challenge) -> Exception:
        failures = await self._store.incr(self._failures_key(session.user.id), ttl=self._settings.failure_window)
        consecutive = await self._store.incr(self._consecutive_key(session.user.id), ttl=CONSECUTIVE_MEMORY)
        attempts = await self._store.incr(
            self._per_challenge_key("attempts", challenge), ttl=self._settings.challenge_ttl + TOMBSTONE
        )
        remaining = max(0, self._settings.max_attempts - attempts)
        logger.warning(
            "step-up wrong code: user=%s attempt=%d/%d failures=%d/%d",
            session.user.id,
            attempts,
            self._settings.max_attempts,
            failures,
            self._settings.max_failures,
        )
        locked = consecutive >= self._settings.max_consecutive_failures
        blocked = failures >= self._settings.max_failures
        if remaining == 0 or locked or blocked:
            # Transaction Authorization CS 2.4: after the set number of failures the whole challenge restarts.
            await self._store.delete(self._challenge_key(session))
        if locked:
            logger.error("step-up locked: user=%s after %d wrong codes in a row", session.user.id, consecutive)
            return StepUpLocked()
        if blocked:
            retry_after = await self._retry_after(self._failures_key(session.user.id))
            logger.warning("step-up blocked: user=%s for %d s", session.user.id, retry_after)
            return StepUpBlocked(retry_after=retry_after)
        return InvalidCode(attempts_remaining=remaining)

    async def _used_method(self, challenge: Challenge, method_id: str | None) -> str:
        # FusionAuth does not say which method a code came from: take the person's choice, else the channel a
        # code was last sent by, else the authenticator. A label for the UI, not a security property.
        chosen = next((m.method for m in challenge.methods if m.id == method_id), None)
        sent = await self._store.pop(self._per_challenge_key("sent", challenge))
        kinds = [m.method for m in challenge.methods]
        return chosen or sent or ("authenticator" if "authenticator" in kinds else kinds[0])

    def _map_failure(self, exc: TwoFactorFailed, step: str) -> Exception:
        logger.warning("step-up %s refused by FusionAuth: status=%d codes=%s", step, exc.status, exc.error_codes)
        if exc.status == 404:
            if step == "start":
                return StepUpRejected("account_not_found", "Your account no longer exists at the sign-in service.")
            return ChallengeExpired()
        if exc.status == 409:
            return StepUpRejected("login_prevented", "Your account is locked or suspended. Contact support.")
        if exc.status == 410:
            return StepUpRejected("account_expired", "Your account has expired. Contact support.")
        if exc.status == 423:
            return StepUpRejected("account_locked", "Your account is locked. Try again later or contact support.")
        if exc.status == 400:
            if step == "send":
                return StepUpRejected("step_up_rejected", "That code could not be sent. Try another method.")
            return StepUpRejected("step_up_rejected", "The sign-in service refused the step-up. Start again.")
        return FusionAuthError()
