"""The second factors a person manages: list them, add an authenticator app, remove one.

Whoever holds a stolen session and can add their own authenticator passes every step-up afterwards. So adding a factor
needs proof that the account holder is present, and removing one a fresh step-up. Security properties, and the line
that enforces each:

- Adding needs a recent sign-in (`require_recent_sign_in`): the session's `auth_time`, which the sign-in took from a
  verified token (the ID token's claim for the hosted page, the Login API's token for native sign-in) and sealed in the
  session record, at most `enrolment.max_auth_age` seconds old. A `prompt=login` in a URL proves nothing: whoever builds
  the URL can leave it out, and FusionAuth itself says it does not guarantee a new sign-in (docs/fusionauth.md §6.1).
- Someone who has a factor already must step up for a new one (the bound `add_factor` action; deps.FactorAdder), with
  the one challenge machine (stepup/challenge.py); removing a factor always needs one (`remove_factor`), and FusionAuth
  removes it only with a current code of that factor or a recovery code.
- The TOTP secret stays server-side between start and confirm: sealed (auth/sealing.py) under a key derived from the
  session id, which only the cookie holds, and stored under a hash of it, so only this session can finish (a step-up
  meanwhile gives the session a new id, and the enrolment is started again). It is answered once, by the start, for
  the person's app to take; never again, and never logged.
- Wrong codes count like step-up's (`Attempts`: per enrolment or per confirmation, per user per window, in a row),
  one check at a time per user (`ChallengeMachine.one_at_a_time`). An enrolment's right code clears nothing: it proves
  the new app, not the account.
- The recovery codes FusionAuth answers for a first factor go to the person once and are never stored or logged
  (SecretStr until the answer is built).
- A change of factors voids this session's step-up (its grant is deleted and the session gets a new id without one)
  and ends the person's other sessions (ASVS 7.4.3: sessions are terminated after authentication factors change),
  through the per-user session index (`SessionManager.end_user_sessions`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from dataclasses import asdict, dataclass

import pyotp
from pydantic import SecretStr

from ..activity import ActivityLog
from ..auth.sealing import Unsealable, open_sealed, seal
from ..auth.sessions import Session, SessionManager
from ..clock import Clock
from ..errors import (
    AppError,
    EnrolmentExpired,
    FactorChangeRefused,
    FusionAuthError,
    NoEnrolment,
    ReauthenticationRequired,
    StepUpRejected,
    StoreUnavailable,
)
from ..fusionauth.client import FusionAuthClient, TwoFactorFailed, TwoFactorMethod
from ..settings import Settings
from ..storage import Store, user_key
from .challenge import TOMBSTONE, ChallengeMachine, login_prevented, to_method
from .service import StepUpService, grant_reference

logger = logging.getLogger(__name__)

# Seconds a started enrolment waits for its code: time to install an app, scan, and type. Its secret dies with it.
ENROLMENT_TTL = 600
# What FusionAuth's authenticator method is (docs/fusionauth.md §8: HmacSHA1, 6 digits, 30 s); the otpauth URI says so.
TOTP_ALGORITHM = "SHA1"
TOTP_DIGITS = 6
TOTP_PERIOD = 30


@dataclass(frozen=True)
class Factor:
    """A second factor as the person sees it: its destination masked, as step-up shows it."""

    id: str
    method: str
    hint: str
    name: str | None
    last_used: bool


@dataclass(frozen=True)
class Enrolment:
    """A started enrolment, as answered once: what the person's authenticator app needs."""

    secret: str  # base32, for typing in by hand
    uri: str  # otpauth://totp/...
    issuer: str
    account: str
    qr_code: str  # data:image/svg+xml URI of the QR code of `uri`, rendered here (no image from another site)
    expires_at: float


@dataclass(frozen=True)
class Added:
    session: Session | None  # a new id, without its step-up; None: the session ended (the store failed meanwhile)
    recovery_codes: list[SecretStr]  # the first factor's; empty for any after


@dataclass(frozen=True)
class Removed:
    session: Session | None  # as Added's
    removed: list[Factor]
    remaining: list[Factor]


@dataclass(frozen=True)
class _Pending:
    id: str  # names its attempt counter
    secret: str  # base64, as FusionAuth takes it
    expires_at: float


def _factor(method: TwoFactorMethod) -> Factor:
    shown = to_method(method)
    return Factor(id=shown.id, method=shown.method, hint=shown.hint, name=method.name, last_used=shown.last_used)


def qr_code(uri: str) -> str:
    """The QR code of `uri` as an SVG data URI. The SPA shows it in an <img>: the CSP allows data: images only, and
    an SVG shown as an image runs nothing."""
    # Imported here: only adding an authenticator app draws a QR code, and segno's modules would otherwise take about
    # a megabyte of every worker's memory for the whole of its life.
    import segno

    return segno.make(uri, error="m", micro=False).svg_data_uri(scale=5, border=4)


class FactorService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        fusionauth: FusionAuthClient,
        sessions: SessionManager,
        challenges: ChallengeMachine,
        step_up: StepUpService,
        activity: ActivityLog,
        clock: Clock,
    ) -> None:
        self._settings = settings.enrolment
        self._store = store
        self._fusionauth = fusionauth
        self._sessions = sessions
        self._challenges = challenges
        self._attempts = challenges.attempts
        self._step_up = step_up
        self._activity = activity
        self._clock = clock

    @property
    def max_auth_age(self) -> int:
        return self._settings.max_auth_age

    # -- listing ---------------------------------------------------------------------------------------------------

    async def factors(self, user_id: str) -> list[Factor]:
        """The user's methods, as FusionAuth has them now (docs/fusionauth.md §8)."""
        try:
            methods = await self._fusionauth.second_factors(user_id=user_id)
        except TwoFactorFailed as exc:
            raise self._refused(exc) from exc
        return [_factor(method) for method in methods]

    # -- a recent sign-in --------------------------------------------------------------------------------------------

    def signed_in_recently(self, session: Session) -> bool:
        auth_time = session.auth_time
        return auth_time is not None and self._clock.now() - auth_time <= self._settings.max_auth_age

    def require_recent_sign_in(self, session: Session) -> None:
        """401 reauthentication_required unless the person signed in (typed their password) recently. The session's
        auth_time came from a verified token at sign-in, so only a real new sign-in moves it."""
        if not self.signed_in_recently(session):
            raise ReauthenticationRequired(max_age=self._settings.max_auth_age)

    # -- adding an authenticator app ---------------------------------------------------------------------------------

    @staticmethod
    def _binding(session: Session) -> str:
        # A hash of the session id: the store never holds the id itself (a bearer secret).
        return hashlib.sha256(b"stepup-bff/enrolment:" + session.id.encode()).hexdigest()

    def _pending_key(self, session: Session) -> str:
        return user_key("enrolment", session.user.id, self._binding(session))

    async def start_authenticator(self, session: Session) -> Enrolment:
        """A new secret from FusionAuth, held for this session; a start replaces any earlier one of it. The caller has
        checked the recent sign-in and, for someone with a factor, the step-up (deps.FactorAdder)."""
        user_id = session.user.id
        # Blocked or locked for wrong codes: the code that finishes an enrolment would be refused anyway.
        await self._attempts.refuse_if_blocked(user_id)
        # Each start is an API-keyed call to FusionAuth: counted with step-up's starts (max_starts per window).
        await self._challenges.count_start(user_id)
        generated = await self._fusionauth.generate_two_factor_secret()
        now = self._clock.now()
        pending = _Pending(
            id=secrets.token_urlsafe(16), secret=generated.secret.get_secret_value(), expires_at=now + ENROLMENT_TTL
        )
        key = self._pending_key(session)
        sealed = seal(session.id, key, json.dumps(asdict(pending)).encode())
        # Kept a while past its end, to say "expired" rather than "none" (as challenges are).
        await self._store.set(key, sealed, ttl=ENROLMENT_TTL + TOMBSTONE)
        # Without base32's "=" padding, which the otpauth Key URI format leaves out and some apps refuse.
        secret = generated.secretBase32Encoded.get_secret_value().rstrip("=")
        account = session.user.email or session.user.name
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=account, issuer_name=self._settings.issuer
        )
        logger.info("authenticator enrolment started: user=%s", user_id)
        return Enrolment(
            secret=secret,
            uri=uri,
            issuer=self._settings.issuer,
            account=account,
            qr_code=qr_code(uri),
            expires_at=pending.expires_at,
        )

    async def _pending(self, session: Session) -> _Pending:
        key = self._pending_key(session)
        raw = await self._store.get(key)
        if raw is None:
            raise NoEnrolment()
        try:
            pending = _Pending(**json.loads(open_sealed(session.id, key, raw)))
        except (Unsealable, ValueError, TypeError) as exc:
            # Only someone who can write to the store could cause this: nothing to finish with.
            logger.warning("enrolment record refused: %s", exc)
            await self._store.delete(key)
            raise NoEnrolment() from exc
        if self._clock.now() >= pending.expires_at:
            await self._store.delete(key)
            raise EnrolmentExpired()
        return pending

    async def confirm_authenticator(self, session: Session, code: str, name: str | None) -> Added:
        """Add the started authenticator with FusionAuth, proven by a current code of it (docs/fusionauth.md §8)."""
        user_id = session.user.id
        recovery_codes: list[SecretStr] | None = None
        try:
            async with self._challenges.one_at_a_time(user_id):
                await self._attempts.refuse_if_blocked(user_id)
                pending = await self._pending(session)
                try:
                    recovery_codes = await self._fusionauth.enable_authenticator(
                        user_id=user_id, secret=pending.secret, code=code, name=name
                    )
                except TwoFactorFailed as exc:
                    if exc.status == 421:
                        verdict = await self._attempts.wrong(user_id, "enrolment:" + pending.id)
                        if verdict.discard:
                            # After max_attempts the app's secret is spent: a new start, a new secret.
                            await self._store.delete(self._pending_key(session))
                        raise verdict.error from exc
                    raise self._refused(exc) from exc
                await self._store.delete(self._pending_key(session))
        except StoreUnavailable:
            if recovery_codes is None:
                raise  # nothing was added: fail closed, as everywhere
            # Added at FusionAuth, and its recovery codes exist only in this answer: it must go out (see below).
            logger.error("authenticator added but the store failed after it: user=%s", user_id)
        logger.info("second factor added: user=%s method=authenticator first=%s", user_id, bool(recovery_codes))
        await self._activity.second_factor_added(user_id, "authenticator")
        return Added(await self._factors_changed(session), recovery_codes or [])

    async def cancel(self, session: Session) -> None:
        await self._store.delete(self._pending_key(session))

    # -- removing a factor -----------------------------------------------------------------------------------------

    async def remove(self, session: Session, factor: Factor, code: str, before: list[Factor]) -> Removed:
        """Remove `factor` with a current code of it, or (FusionAuth's rule) every factor with a recovery code. The
        caller's guard has checked the step-up (remove_factor); a wrong code counts against that confirmation."""
        user_id = session.user.id
        done = False
        try:
            async with self._challenges.one_at_a_time(user_id):
                await self._attempts.refuse_if_blocked(user_id)
                try:
                    await self._fusionauth.disable_two_factor(user_id=user_id, method_id=factor.id, code=code)
                except TwoFactorFailed as exc:
                    if exc.status == 421:
                        # Counted per confirmation: a new step-up brings new attempts; the window and the run go on.
                        step_up = session.step_up
                        scope = "remove:" + (grant_reference(step_up.grant if step_up else None) or factor.id)
                        raise (await self._attempts.wrong(user_id, scope)).error from exc
                    raise self._refused(exc) from exc
                done = True
                # A code of the account's own factor: as good as a step-up's.
                await self._attempts.succeeded(user_id)
        except StoreUnavailable:
            if not done:
                raise
            # Removed at FusionAuth: say so (and end the other sessions, below) rather than answer 503 for it.
            logger.error("second factor removed but the store failed after it: user=%s", user_id)
        remaining = await self._remaining(user_id, before, factor)
        kept = {other.id for other in remaining}
        removed = [other for other in before if other.id not in kept]
        for gone in removed:
            await self._activity.second_factor_removed(user_id, gone.method)
        logger.info("second factors removed: user=%s count=%d remaining=%d", user_id, len(removed), len(remaining))
        return Removed(await self._factors_changed(session), removed, remaining)

    async def _remaining(self, user_id: str, before: list[Factor], factor: Factor) -> list[Factor]:
        """What is left: asked again, since a recovery code removes every factor and FusionAuth does not say which
        code it was. If FusionAuth does not answer now, what is known for certain: all but `factor`."""
        try:
            return await self.factors(user_id)
        except FusionAuthError as exc:
            logger.warning("factors not re-read after a removal (%s): assuming only the one named went", exc.error_code)
            return [other for other in before if other.id != factor.id]

    # -- after a change ----------------------------------------------------------------------------------------------

    async def _factors_changed(self, session: Session) -> Session | None:
        """After a change of factors: void this session's step-up (its grant goes, and a new session id without a
        step-up replaces the cookie: a time-window step-up lives in the cookie alone, so only a new id voids it), and
        end every other session of the person (ASVS 7.4.3), each through the end hook (refresh token revoked,
        recorded as factors_changed). The new session, or None if this one ended meanwhile.

        The change has happened at FusionAuth whatever fails here, and a first factor's recovery codes exist only in
        the answer being built: a failing store must not lose them. So it is logged at ERROR and the answer goes out,
        with the session ended (its rotation failed) or, when only the others could not be ended, kept."""
        user_id = session.user.id
        try:
            await self._step_up.void(session)
            rotated = await self._sessions.rotate(session, None)
        except (LookupError, StoreUnavailable) as exc:
            logger.error("factors changed but the session could not be renewed: user=%s (%s)", user_id, exc)
            with contextlib.suppress(StoreUnavailable):  # the store may be what failed: nothing more to do then
                await self._sessions.end(session, reason="factors_changed")
            return None
        try:
            await self._sessions.end_user_sessions(user_id, reason="factors_changed", keep=rotated)
        except StoreUnavailable:
            logger.error("factors changed but the other sessions could not be ended: user=%s", user_id)
        return rotated

    def _refused(self, exc: TwoFactorFailed) -> AppError:
        logger.warning("second-factor change refused by FusionAuth: status=%d codes=%s", exc.status, exc.error_codes)
        if exc.status == 404:
            return StepUpRejected("account_not_found", "Your account no longer exists at the sign-in service.")
        if exc.status == 400:
            return FactorChangeRefused()
        if exc.status == 409:
            # Not documented for the User and Enable/Disable APIs (docs/fusionauth.md §8), but the tenant's lockout
            # counts wrong codes wherever they are typed: read as at /api/two-factor/login (§4), the same answer.
            return login_prevented(exc.locked_until, self._clock.now())
        return FusionAuthError()
