"""Step-up through FusionAuth's two-factor API: start -> (send) -> finish, and the guard for privileged routes.

The challenge itself (its record, limits and lock) is the shared machine in `stepup.challenge`; this module binds it
to the session and owns what a completed second factor grants.

Security properties, and the line that enforces each:
- FusionAuth's `twoFactorId` and start `code` never leave the server: the challenge record lives in the store;
  the start code is not even parsed (fusionauth.TwoFactorStart).
- The user is always the session's: `userId` comes from the session, and FusionAuth's answer must name the same
  user and echo the state that binds the challenge to this session.
- Wrong codes, sends and concurrent finishes are limited per challenge and per user by the challenge machine.
- Success rotates the session id (ASVS 7.2.4) and records `{at, until, method}` in the signed cookie.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from ..auth.sessions import Session, SessionManager, StepUp
from ..clock import Clock
from ..errors import InsufficientUserAuthentication, LoginRequired, NoSecondFactor
from ..fusionauth.client import FusionAuthClient, TwoFactorFailed, TwoFactorLogin
from ..settings import StepUpSettings
from ..storage import Store, user_key
from .challenge import Challenge, ChallengeMachine, Sent

logger = logging.getLogger(__name__)


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
        challenges: ChallengeMachine,
    ) -> None:
        self._settings = settings
        self._store = store
        self._fusionauth = fusionauth
        self._sessions = sessions
        self._clock = clock
        self._challenges = challenges

    @staticmethod
    def _grant_key(user_id: str, grant: str) -> str:
        return user_key("grant", user_id, grant)

    # -- the flow --------------------------------------------------------------------------------------------------

    async def start(self, session: Session) -> Challenge:
        user_id = session.user.id
        await self._challenges.attempts.refuse_if_blocked(user_id)
        await self._challenges.count_start(user_id)
        challenge_id = secrets.token_urlsafe(16)
        binding = _session_binding(session.id)
        state = {"challengeId": challenge_id, "session": binding}
        try:
            started = await self._fusionauth.start_two_factor(user_id=user_id, state=state)
        except TwoFactorFailed as exc:
            raise self._challenges.map_failure(exc, "start") from exc
        if not started.methods:
            # The start code would still work as an out-of-band code, but this product has no channel of its own
            # to deliver it, and it must never reach the browser.
            raise NoSecondFactor()
        # Starting again replaces the previous challenge of this session.
        challenge = await self._challenges.open(binding, user_id, challenge_id, started.twoFactorId, started.methods)
        logger.info("step-up started: user=%s methods=%s", user_id, ",".join(m.method for m in challenge.methods))
        return challenge

    async def send(self, session: Session, method_id: str) -> Sent:
        """Send a code by email/SMS: the method, seconds until another send, and sends remaining."""
        return await self._challenges.send(_session_binding(session.id), session.user.id, method_id)

    async def finish(
        self, session: Session, code: str, ip_address: str | None, method_id: str | None = None
    ) -> Session:
        """Check the code with FusionAuth; on success return the rotated, stepped-up session.

        `method_id` (optional) says which method the person used; it only labels the result and grants nothing."""

        async def complete(challenge: Challenge) -> TwoFactorLogin:
            return await self._fusionauth.complete_two_factor(
                two_factor_id=challenge.two_factor_id, code=code, ip_address=ip_address
            )

        def accept(challenge: Challenge, answer: TwoFactorLogin) -> bool:
            # FusionAuth must vouch for this session's user, for the challenge this session started.
            return answer.user.id == session.user.id and (answer.state or {}).get("challengeId") == challenge.id

        verified = await self._challenges.verify(
            _session_binding(session.id), session.user.id, complete, method_id=method_id, accept=accept
        )
        step_up = await self.grant(session.user.id, verified.method)
        try:
            rotated = await self._sessions.rotate(session, step_up)
        except LookupError as exc:
            raise LoginRequired("Your session ended during the step-up. Sign in again.") from exc
        logger.info("step-up completed: user=%s method=%s", session.user.id, verified.method)
        return rotated

    async def cancel(self, session: Session) -> None:
        await self._challenges.discard(_session_binding(session.id))

    async def grant(self, user_id: str, method: str) -> StepUp:
        """The record of a second factor completed just now, for the session cookie (and, in single-use mode, the
        grant it may consume once). Sign-in with a second factor counts as one too."""
        now = self._clock.now()
        grant = None
        if self._settings.single_use:
            grant = secrets.token_urlsafe(16)
            await self._store.set(self._grant_key(user_id, grant), user_id, ttl=self._settings.max_age)
        return StepUp(at=now, until=now + self._settings.max_age, method=method, grant=grant)

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
