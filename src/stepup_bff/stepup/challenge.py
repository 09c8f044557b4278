"""The one two-factor challenge machine: step-up and sign-in MFA run on it, and the second factors people manage
(stepup/factors.py) check their codes under its lock and count the wrong ones with its `Attempts`.

A challenge is FusionAuth's `twoFactorId` (from /api/two-factor/start for step-up, from /api/login's 242 for sign-in)
kept server-side under a *binding*: a key only one browser can name (a hash of its session id for step-up; of the id
in its short-lived pending-sign-in cookie for sign-in). It is always counted against a *subject*: whose codes are
being guessed (the user id for step-up; for sign-in, where FusionAuth's 242 names no user, a hash of the normalised
login id).

Security properties, and the line that enforces each:
- FusionAuth's `twoFactorId` never leaves the server: the record lives in the store, under a hash of the binding.
- Wrong codes are counted server-side per challenge and per subject (`Attempts`), so neither an older cookie nor a
  fresh challenge restores attempts (ASVS 6.3.1, NIST 800-63B 5.2.2; Transaction Authorization CS 2.4), and after
  `max_consecutive_failures` in a row the subject is locked until an operator resets it.
- One verification at a time per subject, across all their sessions and challenges (a store lock): the failure
  count is read before FusionAuth is asked and counted after it answers, so without the lock overlapping attempts
  would all pass the check. Of concurrent verifications of one challenge at most one succeeds.
- Sends are limited per challenge (`max_sends`) and spaced per subject (`resend_cooldown`): a new challenge buys no
  extra email or text message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Generic, TypeVar

from ..clock import Clock
from ..errors import (
    AppError,
    ChallengeExpired,
    FusionAuthError,
    InvalidCode,
    InvalidMethod,
    NoChallenge,
    ResendTooSoon,
    StepUpBlocked,
    StepUpInProgress,
    StepUpLocked,
    StepUpRejected,
    TemporarilyLocked,
    TooManySends,
    TooManyStarts,
)
from ..fusionauth.client import FusionAuthClient, TwoFactorFailed, TwoFactorMethod
from ..settings import StepUpSettings
from ..storage import Store, user_key

logger = logging.getLogger(__name__)

T = TypeVar("T")

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
    id: str  # our random id: names counters, and travels in FusionAuth's `state` for step-up
    two_factor_id: str  # FusionAuth's; a secret that stays here
    subject: str  # whose codes these are: the user id, or for sign-in a hash of the login id
    methods: list[Method]
    expires_at: float
    # What this challenge confirms, opaque to the machine (step-up: the id of a pending transaction); None for none.
    bound_to: str | None = None

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Challenge:
        data = json.loads(raw)
        # Fields a newer release added are left out, so that replicas of two releases share challenges while a
        # rolling upgrade runs.
        known = {name: value for name, value in data.items() if name in cls.__dataclass_fields__}
        return cls(**{**known, "methods": [Method(**method) for method in data["methods"]]})

    def __repr__(self) -> str:  # never print the twoFactorId, whatever logs a challenge
        return f"Challenge(id={self.id!r}, subject={self.subject!r}, methods={[m.method for m in self.methods]})"


@dataclass(frozen=True)
class Sent:
    method: Method
    retry_after: int  # seconds until another send is allowed
    sends_remaining: int


@dataclass(frozen=True)
class Verified(Generic[T]):
    challenge: Challenge
    answer: T  # what the caller's FusionAuth call returned
    method: str  # which kind of factor the person used, for the UI


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else "•••"


def mask_phone(number: str) -> str:
    digits = [ch for ch in number if ch.isdigit()]
    return "•••" + "".join(digits[-4:]) if len(digits) >= 4 else "•••"


def to_method(method: TwoFactorMethod) -> Method:
    """A FusionAuth method as the browser may see it: the destination masked."""
    if method.method == "email" and method.email:
        hint = mask_email(method.email)
    elif method.method == "sms" and method.mobilePhone:
        hint = mask_phone(method.mobilePhone)
    elif method.method == "authenticator":
        hint = method.name or "Authenticator app"
    else:
        hint = method.name or method.method
    return Method(id=method.id, method=method.method, hint=hint, last_used=method.lastUsed)


# A login-preventing action that ends later than this is answered as one without an end: "try again next year"
# helps nobody, and support can.
LONGEST_TEMPORARY_LOCK = 366 * 24 * 3600.0
# A lock FusionAuth still enforces though it says it ended this long ago: our clocks disagree by more than any sane
# skew, or the expiry is not in milliseconds (seconds read as milliseconds are January 1970). Either way nothing says
# when waiting will help, so it is answered as a lock without an end rather than "try again in 1 s", over and over.
STALE_LOCK_TOLERANCE = 300.0


def login_prevented(locked_until: float | None, now: float) -> AppError:
    """FusionAuth's 409 (a login-preventing action, docs/fusionauth.md §4, §5): a lock whose end we can believe (at
    most STALE_LOCK_TOLERANCE in the past, at most LONGEST_TEMPORARY_LOCK ahead) is temporary (429
    `temporarily_locked`, until when); any other keeps 403 `login_prevented`: fail closed on "contact support"."""
    if locked_until is not None and -STALE_LOCK_TOLERANCE <= locked_until - now <= LONGEST_TEMPORARY_LOCK:
        return TemporarilyLocked(locked_until=locked_until, now=now)
    return StepUpRejected("login_prevented", "Your account is locked or suspended. Contact support.")


async def retry_after(store: Store, key: str) -> int:
    """Whole seconds until `key` expires (at least 1): the `retry_after` of a 429 counted under it."""
    remaining = await store.ttl(key)
    return max(1, round(remaining or 1))


@dataclass(frozen=True)
class WrongCode:
    """The verdict on one wrong code: the error to answer with, and whether the challenge must be discarded."""

    error: AppError
    discard: bool


class Attempts:
    """Wrong-code accounting per subject and per challenge (or any other scope, such as an enrolment).

    Usable on its own: whatever checks a code calls `refuse_if_blocked` before asking FusionAuth, `wrong` after a
    wrong code and `succeeded` after a right one."""

    def __init__(self, settings: StepUpSettings, store: Store) -> None:
        self._settings = settings
        self._store = store

    @staticmethod
    def failures_key(subject: str) -> str:
        return user_key("failures", subject)

    @staticmethod
    def consecutive_key(subject: str) -> str:
        return user_key("consecutive-failures", subject)

    async def refuse_if_blocked(self, subject: str) -> None:
        consecutive = await self._store.get(self.consecutive_key(subject))
        if consecutive is not None and int(consecutive) >= self._settings.max_consecutive_failures:
            raise StepUpLocked()
        key = self.failures_key(subject)
        failures = await self._store.get(key)
        if failures is not None and int(failures) >= self._settings.max_failures:
            raise StepUpBlocked(retry_after=await retry_after(self._store, key))

    async def wrong(self, subject: str, scope: str) -> WrongCode:
        """Count a wrong code for `subject` and for `scope` (a challenge id); `scope` lives as long as a challenge."""
        settings = self._settings
        failures = await self._store.incr(self.failures_key(subject), ttl=settings.failure_window)
        consecutive = await self._store.incr(self.consecutive_key(subject), ttl=CONSECUTIVE_MEMORY)
        attempts = await self._store.incr(user_key("attempts", subject, scope), ttl=settings.challenge_ttl + TOMBSTONE)
        remaining = max(0, settings.max_attempts - attempts)
        logger.warning(
            "two-factor wrong code: subject=%s attempt=%d/%d failures=%d/%d",
            subject,
            attempts,
            settings.max_attempts,
            failures,
            settings.max_failures,
        )
        locked = consecutive >= settings.max_consecutive_failures
        blocked = failures >= settings.max_failures
        # Transaction Authorization CS 2.4: after the set number of failures the whole challenge restarts.
        discard = remaining == 0 or locked or blocked
        if locked:
            logger.error("two-factor locked: subject=%s after %d wrong codes in a row", subject, consecutive)
            return WrongCode(StepUpLocked(), discard)
        if blocked:
            wait = await retry_after(self._store, self.failures_key(subject))
            logger.warning("two-factor blocked: subject=%s for %d s", subject, wait)
            return WrongCode(StepUpBlocked(retry_after=wait), discard)
        return WrongCode(InvalidCode(attempts_remaining=remaining), discard)

    async def succeeded(self, subject: str) -> None:
        await self._store.delete(self.failures_key(subject))
        await self._store.delete(self.consecutive_key(subject))


class ChallengeMachine:
    def __init__(
        self,
        settings: StepUpSettings,
        store: Store,
        fusionauth: FusionAuthClient,
        clock: Clock,
        *,
        lock_ttl: float = 30.0,
    ) -> None:
        self._settings = settings
        # Must outlast the FusionAuth call made under the lock, or a second verification could slip in beside it.
        self._lock_ttl = lock_ttl
        self._store = store
        self._fusionauth = fusionauth
        self._clock = clock
        self.attempts = Attempts(settings, store)

    # Keys (storage/base.py): a subject's own keys carry the subject as their hash tag; the challenge record is
    # named by its binding, which only one browser can name.
    @staticmethod
    def _key(binding: str) -> str:
        return "challenge:" + binding

    @staticmethod
    def _sent_key(challenge: Challenge) -> str:
        return user_key("sent", challenge.subject, challenge.id)

    # -- opening ---------------------------------------------------------------------------------------------------

    async def count_start(self, subject: str) -> None:
        """Cap the challenges a subject may start per failure window (each start is an API-keyed call)."""
        key = user_key("starts", subject)
        if await self._store.incr(key, ttl=self._settings.failure_window) > self._settings.max_starts:
            raise TooManyStarts(retry_after=await retry_after(self._store, key))

    async def open(
        self,
        binding: str,
        subject: str,
        challenge_id: str,
        two_factor_id: str,
        methods: Sequence[TwoFactorMethod],
        *,
        bound_to: str | None = None,
    ) -> Challenge:
        """Keep FusionAuth's challenge under `binding`, replacing any earlier one there. The per-subject counts are
        untouched; the earlier challenge's own counters die with their expiry."""
        challenge = Challenge(
            id=challenge_id,
            two_factor_id=two_factor_id,
            subject=subject,
            methods=[to_method(method) for method in methods],
            expires_at=self._clock.now() + self._settings.challenge_ttl,
            bound_to=bound_to,
        )
        await self._store.set(self._key(binding), challenge.dumps(), ttl=self._settings.challenge_ttl + TOMBSTONE)
        return challenge

    async def discard(self, binding: str) -> None:
        await self._store.delete(self._key(binding))

    async def live(self, binding: str, subject: str) -> Challenge:
        raw = await self._store.get(self._key(binding))
        if raw is None:
            raise NoChallenge()
        challenge = Challenge.loads(raw)
        if challenge.subject != subject:
            raise NoChallenge()
        if self._clock.now() >= challenge.expires_at:
            await self.discard(binding)
            raise ChallengeExpired()
        return challenge

    # -- sending ---------------------------------------------------------------------------------------------------

    async def send(self, binding: str, subject: str, method_id: str) -> Sent:
        """Have FusionAuth send a code by email/SMS (docs/fusionauth.md §3)."""
        await self.attempts.refuse_if_blocked(subject)
        challenge = await self.live(binding, subject)
        method = next((m for m in challenge.methods if m.id == method_id), None)
        if method is None or method.method not in SENDABLE:
            raise InvalidMethod()
        # Per subject, not per challenge: starting a new challenge must not buy another email or text message.
        cooldown_key = user_key("send-cooldown", subject)
        if not await self._store.add(cooldown_key, "1", ttl=self._settings.resend_cooldown):
            raise ResendTooSoon(retry_after=await retry_after(self._store, cooldown_key))
        sends = await self._store.incr(
            user_key("sends", subject, challenge.id), ttl=self._settings.challenge_ttl + TOMBSTONE
        )
        if sends > self._settings.max_sends:
            raise TooManySends()
        try:
            await self._fusionauth.send_two_factor_code(two_factor_id=challenge.two_factor_id, method_id=method.id)
        except TwoFactorFailed as exc:
            raise self.map_failure(exc, "send") from exc
        except FusionAuthError:
            # Nothing was sent: let the person try again straight away.
            await self._store.delete(cooldown_key)
            raise
        await self._store.set(self._sent_key(challenge), method.method, ttl=self._settings.challenge_ttl)
        logger.info("two-factor code sent: subject=%s method=%s", subject, method.method)
        return Sent(method, self._settings.resend_cooldown, self._settings.max_sends - sends)

    # -- verifying -------------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def one_at_a_time(self, subject: str) -> AsyncIterator[None]:
        """Hold the subject's verification lock for the block: whatever checks a code of theirs (a challenge, a factor
        being added or removed) checks it alone, so that the failure count read before FusionAuth is asked is still
        true when it answers. StepUpInProgress while another check runs."""
        lock = user_key("finish-lock", subject)
        if not await self._store.add(lock, "1", ttl=self._lock_ttl):
            raise StepUpInProgress()
        try:
            yield
        finally:
            await self._store.delete(lock)

    async def verify(
        self,
        binding: str,
        subject: str,
        complete: Callable[[Challenge], Awaitable[T]],
        *,
        method_id: str | None = None,
        accept: Callable[[Challenge, T], bool] | None = None,
    ) -> Verified[T]:
        """Check a code: `complete(challenge)` makes the FusionAuth call (/api/two-factor/login) and returns its
        answer, or raises TwoFactorFailed (421 for a wrong code). On success the challenge is consumed.

        `accept` may refuse an answer (FusionAuth vouching for another user or another challenge): the challenge is
        then discarded and nothing is granted. `method_id` (optional) says which method the person used; FusionAuth
        accepts any valid code of the user without saying which, so it only labels the result."""
        async with self.one_at_a_time(subject):
            # Checked under the lock: a verification that held it before us may have just reached the limit.
            await self.attempts.refuse_if_blocked(subject)
            challenge = await self.live(binding, subject)
            try:
                answer = await complete(challenge)
            except TwoFactorFailed as exc:
                if exc.status == 421:
                    verdict = await self.attempts.wrong(subject, challenge.id)
                    if verdict.discard:
                        await self.discard(binding)
                    raise verdict.error from exc
                raise self.map_failure(exc, "finish") from exc
            if accept is not None and not accept(challenge, answer):
                # FusionAuth vouched for someone else, or for another challenge: never grant anything on that.
                logger.error("two-factor answer does not match the challenge: user or state differs; refused")
                await self.discard(binding)
                raise FusionAuthError("The sign-in service gave an answer for a different challenge.")
            if await self._store.pop(self._key(binding)) is None:
                raise NoChallenge()  # consumed meanwhile (cancelled or replaced): grant nothing
            await self.attempts.succeeded(subject)
            return Verified(challenge, answer, await self._used_method(challenge, method_id))

    async def _used_method(self, challenge: Challenge, method_id: str | None) -> str:
        # FusionAuth does not say which method a code came from: take the person's choice, else the channel a
        # code was last sent by, else the authenticator. A label for the UI, not a security property.
        chosen = next((m.method for m in challenge.methods if m.id == method_id), None)
        sent = await self._store.pop(self._sent_key(challenge))
        kinds = [m.method for m in challenge.methods]
        return chosen or sent or ("authenticator" if "authenticator" in kinds else kinds[0])

    # -- FusionAuth's refusals -------------------------------------------------------------------------------------

    def map_failure(self, exc: TwoFactorFailed, step: str) -> Exception:
        """FusionAuth's two-factor statuses (docs/fusionauth.md §2-§4) as our errors; `step` is start/send/finish."""
        logger.warning("two-factor %s refused by FusionAuth: status=%d codes=%s", step, exc.status, exc.error_codes)
        if exc.status == 404:
            if step == "start":
                return StepUpRejected("account_not_found", "Your account no longer exists at the sign-in service.")
            return ChallengeExpired()
        if exc.status == 409:
            return login_prevented(exc.locked_until, self._clock.now())
        if exc.status == 410:
            return StepUpRejected("account_expired", "Your account has expired. Contact support.")
        if exc.status == 423:
            return StepUpRejected("account_locked", "Your account is locked. Try again later or contact support.")
        if exc.status == 400:
            if step == "send":
                return StepUpRejected("step_up_rejected", "That code could not be sent. Try another method.")
            return StepUpRejected("step_up_rejected", "The sign-in service refused the step-up. Start again.")
        return FusionAuthError()
