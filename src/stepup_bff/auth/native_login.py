"""Native sign-in: the SPA's own form, through FusionAuth's Login API, with the BFF the only party that sees a token.

FusionAuth's "single-page application native login" workflow has the browser post credentials to FusionAuth and
hand the JWT to the backend; FusionAuth calls it less secure because the JWT passes through JavaScript. Here the SPA
posts to us (`POST /auth/native/login`, CSRF-checked like every state-changing route, which is what stops login
CSRF), we call `POST /api/login` with the API key (docs/fusionauth.md §5), verify the JWT like any other (signature,
iss, aud, exp), and keep the tokens server-side. The browser gets the session cookie and nothing else.

When FusionAuth answers 242 (a second factor is due), its `twoFactorId` goes into the shared challenge machine
under a binding only this browser can name: the random id in a short-lived signed cookie of its own. The limits,
cooldowns and lock are step-up's (`stepup.challenge`); since FusionAuth's 242 names no user, they count against a
hash of the login id. Completing it (`/api/two-factor/login` *without* noJWT, §4) signs in and counts as a fresh
step-up.

Password guessing is limited per login id and per client address before FusionAuth is asked (`auth.guessing`).
Unknown user, wrong password and locked account get the very same answer. No refusal creates a session.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, replace

from itsdangerous import BadData, SignatureExpired

from ..clock import Clock
from ..errors import (
    ChallengeExpired,
    FusionAuthError,
    InvalidCredentials,
    NoChallenge,
    SignInRefused,
    StoreUnavailable,
    TemporarilyLocked,
    TooManyAttempts,
)
from ..fusionauth.client import FusionAuthClient, LoginResult
from ..settings import Settings
from ..stepup.challenge import Challenge, ChallengeMachine, Sent, login_prevented
from ..stepup.service import StepUpService
from ..storage import Store
from ..web.cookies import cookie_header, expired_cookie_header, make_serializer
from .guessing import FailureBudget, address_bucket, digest, normalise_login_id
from .sessions import Session, SessionManager, Tokens, User
from .tokens import InvalidToken, TokenVerifier, auth_time_of

logger = logging.getLogger(__name__)

# FusionAuth's answers that say nothing of the password being right, answered alike (InvalidCredentials) and counted
# as failed guesses: 404 (unknown user or wrong password) and 423, which FusionAuth gives a locked account *before* it
# looks at the password (FusionAuth/fusionauth-issues#2524). Told apart, 423 would say to anyone who types an email
# address with any password that an account exists (ASVS V6.3.8), and, uncounted, that guessing at it costs nothing.
# The person whose account it is learns nothing from us either; FusionAuth (its hosted page, an administrator) does.
NO_SIGN_IN = frozenset({404, 423})

# FusionAuth's conditional successes and refusals (docs/fusionauth.md §5), as answers that say what to do. 242 is the
# second factor.
REFUSALS: dict[int, tuple[str, str]] = {
    202: (
        "not_registered",
        "Your account has no access to this application. Ask an administrator to give you access.",
    ),
    203: (
        "password_change_required",
        "Your password must be changed first. Use FusionAuth's sign-in page to change it, then sign in again.",
    ),
    212: (
        "verification_required",
        "Confirm your email address first: follow the link in the email you were sent, then sign in again.",
    ),
    213: (
        "verification_required",
        "Your registration is not verified yet: follow the link in the email you were sent, then sign in again.",
    ),
    409: ("login_prevented", "Your account is locked or suspended. Contact support."),
    410: ("account_expired", "Your account has expired. Contact support."),
}


@dataclass(frozen=True)
class SignedIn:
    session: Session


@dataclass(frozen=True)
class SecondFactorDue:
    challenge: Challenge
    cookie: str  # the Set-Cookie header of the pending sign-in


@dataclass(frozen=True)
class _Pending:
    id: str  # names the challenge's binding; only this browser holds it
    subject: str


class NativeSignIn:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        fusionauth: FusionAuthClient,
        tokens: TokenVerifier,
        sessions: SessionManager,
        challenges: ChallengeMachine,
        step_up: StepUpService,
        clock: Clock,
    ) -> None:
        login = settings.login
        self._clock = clock
        self._fusionauth = fusionauth
        self._tokens = tokens
        self._sessions = sessions
        self._challenges = challenges
        self._step_up = step_up
        self._per_login_id = FailureBudget(store, "login-id", login.max_failures_per_login_id, login.failure_window)
        self._per_address = FailureBudget(store, "address", login.max_failures_per_address, login.failure_window)
        self._ttl = settings.step_up.challenge_ttl
        self._secure = settings.cookie_secure
        # Its own salt: a pending sign-in can never pass as a session or a hosted-page login state, nor the reverse.
        self._serializer = make_serializer(settings.session.secret_keys, salt="stepup-bff/native-sign-in", clock=clock)
        # __Host- on https (a sibling subdomain cannot plant one), which forces Path=/; on localhost only /auth/.
        self.cookie_name = "__Host-stepup_sign_in" if self._secure else "stepup_sign_in"
        self._path = "/" if self._secure else "/auth/"

    # -- password --------------------------------------------------------------------------------------------------

    async def login(
        self, login_id: str, password: str, ip_address: str | None, previous: Session | None
    ) -> SignedIn | SecondFactorDue:
        login_key = digest("login-id", normalise_login_id(login_id))
        address_key = digest("address", address_bucket(ip_address))  # an IPv6 address counts as its /64
        # Counted before FusionAuth is asked; the per-id budget first, so that guesses at one account refused
        # there never spend the address's budget, which the other people behind that address share.
        if not await self._per_login_id.take(login_key):
            logger.warning("native sign-in refused: too many failures for login=%s", login_key[:12])
            raise TooManyAttempts(retry_after=await self._per_login_id.retry_after(login_key))
        if not await self._per_address.take(address_key):
            await self._per_login_id.give_back(login_key)
            logger.warning("native sign-in refused: too many failures from address=%s", address_key[:12])
            raise TooManyAttempts(retry_after=await self._per_address.retry_after(address_key))
        result: LoginResult | None = None
        try:
            try:
                result = await self._fusionauth.login(login_id=login_id, password=password, ip_address=ip_address)
            finally:
                if result is None or result.status not in NO_SIGN_IN:  # the right password, or no verdict at all
                    await self._per_login_id.give_back(login_key)
                    await self._per_address.give_back(address_key)
            if result.status in NO_SIGN_IN:
                logger.info("native sign-in failed: login=%s status=%d", login_key[:12], result.status)
                raise InvalidCredentials()  # the same for an unknown user, a wrong password and a locked account
            if result.status == 242:
                return await self._second_factor(result, "login:" + login_key)
            return SignedIn(await self._sign_in(result, previous, step_up_method=None))
        except StoreUnavailable:
            await self._revoke_unheld(result)
            raise

    async def _second_factor(self, result: LoginResult, subject: str) -> SecondFactorDue:
        two_factor_id = result.answer.twoFactorId
        if two_factor_id is None:
            raise FusionAuthError()
        if not result.answer.methods:
            # The login policy is Required and the user has no method yet (FusionAuth lists configurableMethods).
            # Setting one up is FusionAuth's hosted page's job.
            raise SignInRefused(
                "second_factor_setup_required",
                "Your account needs a second factor before you can sign in. Use FusionAuth's sign-in page to set "
                "one up.",
            )
        await self._challenges.attempts.refuse_if_blocked(subject)
        pending = _Pending(id=secrets.token_urlsafe(16), subject=subject)
        challenge = await self._challenges.open(
            self._binding(pending),
            subject,
            secrets.token_urlsafe(16),
            two_factor_id.get_secret_value(),
            result.answer.methods,
        )
        value = self._serializer.dumps({"p": pending.id, "s": pending.subject})
        cookie = cookie_header(
            self.cookie_name, value, max_age=self._ttl, path=self._path, secure=self._secure, same_site="Strict"
        )
        logger.info("native sign-in: second factor due, methods=%s", ",".join(m.method for m in challenge.methods))
        return SecondFactorDue(challenge, cookie)

    # -- second factor ---------------------------------------------------------------------------------------------

    async def send(self, cookie: str | None, method_id: str) -> Sent:
        pending = self._pending(cookie)
        return await self._challenges.send(self._binding(pending), pending.subject, method_id)

    async def finish(
        self, cookie: str | None, code: str, ip_address: str | None, previous: Session | None, method_id: str | None
    ) -> Session:
        pending = self._pending(cookie)
        issued: LoginResult | None = None

        async def complete(challenge: Challenge) -> LoginResult:
            nonlocal issued
            issued = await self._fusionauth.complete_two_factor_sign_in(
                two_factor_id=challenge.two_factor_id, code=code, ip_address=ip_address
            )
            return issued

        try:
            verified = await self._challenges.verify(
                self._binding(pending), pending.subject, complete, method_id=method_id
            )
            return await self._sign_in(verified.answer, previous, step_up_method=verified.method)
        except StoreUnavailable:
            await self._revoke_unheld(issued)  # the challenge machine's own writes come after FusionAuth's answer
            raise

    async def _revoke_unheld(self, result: LoginResult | None) -> None:
        """The store failed after FusionAuth issued tokens, before (or while) a session record took them: revoke the
        refresh token. Only ending a session revokes one (the end hook), and no session holds this one, so it would
        stay live at FusionAuth for its whole lifetime, listed as the user's, held by nobody. (A record written just
        before the failure keeps a dead token; its cookie was never sent.)"""
        if result is not None:
            await self._fusionauth.revoke_refresh_token_quietly(result.answer.refreshTokenId)

    def clear_cookie_header(self) -> str:
        return expired_cookie_header(self.cookie_name, path=self._path, secure=self._secure)

    def _pending(self, cookie: str | None) -> _Pending:
        if not cookie:
            raise NoChallenge("There is no sign-in waiting for a second factor. Sign in again.")
        try:
            data = self._serializer.loads(cookie, max_age=self._ttl)
            return _Pending(id=str(data["p"]), subject=str(data["s"]))
        except SignatureExpired as exc:
            raise ChallengeExpired("This sign-in took too long. Sign in again.") from exc
        except (BadData, KeyError, TypeError) as exc:
            raise NoChallenge("There is no sign-in waiting for a second factor. Sign in again.") from exc

    @staticmethod
    def _binding(pending: _Pending) -> str:
        return digest("native-sign-in", pending.id)

    # -- the session -----------------------------------------------------------------------------------------------

    async def _sign_in(self, result: LoginResult, previous: Session | None, *, step_up_method: str | None) -> Session:
        answer = result.answer
        if result.status != 200:
            # A conditional success (not registered, unverified) may carry tokens we will not use: revoke them, so
            # nothing is left behind at FusionAuth.
            await self._fusionauth.revoke_refresh_token_quietly(answer.refreshTokenId)
            if result.status == 409:
                # A lock with an end (the tenant's lockout after failed attempts) says until when; REFUSALS has the
                # answer for one without.
                refusal = login_prevented(result.locked_until, self._clock.now())
                if isinstance(refusal, TemporarilyLocked):
                    logger.info("native sign-in refused by FusionAuth: status=409 temporarily locked")
                    raise refusal
            reason, description = REFUSALS.get(result.status, ("sign_in_refused", SignInRefused.description))
            logger.info("native sign-in refused by FusionAuth: status=%d reason=%s", result.status, reason)
            raise SignInRefused(reason, description)
        if answer.token is None or answer.user is None:
            logger.error("native sign-in: FusionAuth answered 200 without a token; is the application's JWT enabled?")
            raise FusionAuthError()
        token = answer.token.get_secret_value()
        try:
            claims = await self._tokens.verify(token)
        except InvalidToken as exc:
            logger.warning("native sign-in failed: token rejected: %s", exc)
            await self._fusionauth.revoke_refresh_token_quietly(answer.refreshTokenId)
            raise FusionAuthError("The sign-in could not be verified.") from exc
        if claims.get("sub") != answer.user.id:
            logger.warning("native sign-in failed: the token names another user than the answer")
            await self._fusionauth.revoke_refresh_token_quietly(answer.refreshTokenId)
            raise FusionAuthError("The sign-in could not be verified.")
        email = answer.user.email or (claims["email"] if isinstance(claims.get("email"), str) else None)
        user = User(id=answer.user.id, email=email, name=answer.user.display_name)
        if previous is not None:
            # A new sign-in replaces whatever session this browser had (ASVS 7.2.4: new id on authentication).
            await self._sessions.end(previous, reason="replaced")
        refresh = answer.refreshToken.get_secret_value() if answer.refreshToken else None
        session = await self._sessions.create(
            user, Tokens(token, refresh, answer.refreshTokenId), auth_time=auth_time_of(claims)
        )
        if step_up_method is not None:
            # The second factor was completed just now: that is a step-up, so the next privileged action needs no
            # second prompt.
            session = replace(session, step_up=await self._step_up.grant(user.id, step_up_method))
        logger.info("signed in (native): user=%s second_factor=%s", user.id, step_up_method or "none")
        return session
