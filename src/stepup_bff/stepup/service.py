"""Step-up through FusionAuth's two-factor API: start -> (send) -> finish, and the guard for privileged routes.

The challenge itself (its record, limits and lock) is the shared machine in `stepup.challenge`; this module binds it
to the session, owns what a completed second factor grants, and, for an action bound to its transaction
(`stepup.transaction`), what that grant is good for.

Security properties, and the line that enforces each:
- FusionAuth's `twoFactorId` and start `code` never leave the server: the challenge record lives in the store;
  the start code is not even parsed (fusionauth.TwoFactorStart).
- The user is always the session's: `userId` comes from the session, and FusionAuth's answer must name the same
  user and echo the state that binds the challenge to this session (and to the transaction it confirms).
- Wrong codes, sends and concurrent finishes are limited per challenge and per user by the challenge machine.
- Success rotates the session id (ASVS 7.2.4) and records `{at, until, method, grant, transaction}` in the signed
  cookie; the grant itself lives in the store, so it ends with the session and is consumed atomically (`pop`).
- A bound action runs only for the transaction its step-up confirmed: the grant holds the SHA-256 of the confirmed
  request's canonical form, and the guard recomputes it from the request in hand before letting it through. Another
  field value, another action, a second use, an unbound step-up: 401 with a fresh challenge for this request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from ..activity import ActivityLog, PendingEvent
from ..auth.sessions import Session, SessionManager, StepUp
from ..clock import Clock
from ..errors import (
    AppError,
    InsufficientUserAuthentication,
    InvalidCode,
    LoginRequired,
    NoSecondFactor,
    StepUpBlocked,
    StepUpLocked,
    TemporarilyLocked,
    TooManyPending,
    TransactionExpired,
)
from ..fusionauth.client import FusionAuthClient, TwoFactorFailed, TwoFactorLogin
from ..settings import StepUpSettings
from ..storage import Store, user_key
from .challenge import Challenge, ChallengeMachine, Sent, retry_after
from .policy import Policy, resolve
from .transaction import Transaction

if TYPE_CHECKING:
    from ..ops.metrics import Metrics, TransactionRefusal

logger = logging.getLogger(__name__)

# Transactions a user may have refused (each waiting for its confirmation) per step_up.challenge_ttl.
MAX_PENDING = 30

# The refusal's own words, where they say more than "confirm it's you".
_REFUSALS: dict[str, str] = {
    "used": "That confirmation was used already. Confirm this request.",
    "mismatch": "What you confirmed differs from this request. Confirm this one.",
    "expired": "Your confirmation ran out. Confirm this request again.",
}


def _session_binding(session_id: str) -> str:
    # FusionAuth sees a hash of the session id, never the id itself (which is a bearer secret).
    return hashlib.sha256(b"stepup-bff/challenge:" + session_id.encode()).hexdigest()


def grant_reference(grant: str | None) -> str | None:
    """What the activity log says about a grant: a hash of its id, which only ever travels in the signed cookie."""
    if grant is None:
        return None
    return "g" + hashlib.sha256(b"stepup-bff/grant:" + grant.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Pending:
    """A transaction waiting for its confirmation: kept when its request is refused, named by the challenge."""

    id: str
    action: str
    digest: str
    summary: str
    session: str  # the lineage of the session whose request was refused (its sign-in): only it may confirm it

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str) -> Pending | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Started:
    challenge: Challenge
    transaction: Pending | None  # what this step-up confirms, for a bound action


@dataclass(frozen=True)
class Finished:
    session: Session  # rotated, stepped up
    transaction: Pending | None


@dataclass(frozen=True)
class Authorization:
    """A privileged request let through: what it rode on, and how to give the grant back if it never ran."""

    policy: Policy
    step_up: StepUp | None  # None: an idempotent repeat, which needs none
    restore: Callable[[], Awaitable[None]] | None


class StepUpService:
    def __init__(
        self,
        settings: StepUpSettings,
        store: Store,
        fusionauth: FusionAuthClient,
        sessions: SessionManager,
        clock: Clock,
        challenges: ChallengeMachine,
        activity: ActivityLog,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._fusionauth = fusionauth
        self._sessions = sessions
        self._clock = clock
        self._challenges = challenges
        self._activity = activity
        self._metrics = metrics

    @staticmethod
    def _grant_key(user_id: str, grant: str) -> str:
        return user_key("grant", user_id, grant)

    @staticmethod
    def _void_key(user_id: str) -> str:
        # Step-ups completed at or before the time it holds count for nothing (a password or second factor changed).
        return user_key("step-up-void", user_id)

    @staticmethod
    def _pending_key(user_id: str, transaction_id: str) -> str:
        return user_key("transaction", user_id, transaction_id)

    @staticmethod
    def _lineage_key(user_id: str, session_id: str) -> str:
        return user_key("lineage", user_id, _session_binding(session_id))

    async def _lineage(self, session: Session, *, create: bool = False) -> str | None:
        """A random id for this sign-in that survives the step-ups' session rotations (finish() carries it over): a
        pending transaction belongs to it, so that it stays confirmable after another step-up rotated the session id,
        and to no other session of the same user."""
        key = self._lineage_key(session.user.id, session.id)
        lineage = await self._store.get(key)
        if lineage is None and create:
            lineage = secrets.token_urlsafe(16)
            remaining = max(1.0, session.expires_at - self._clock.now())
            if not await self._store.add(key, lineage, ttl=remaining):
                lineage = await self._store.get(key)  # a concurrent refusal made it first
        return lineage

    async def void_step_ups(self, user_id: str, before: float) -> None:
        """Every step-up of this user completed at or before `before` counts no more, in every session (its record
        lives in the cookie, so the store says which to disregard). Kept as long as any step-up can be fresh."""
        key = self._void_key(user_id)
        current = await self._store.get(key)
        try:
            before = max(before, float(current)) if current is not None else before
        except ValueError:
            pass
        await self._store.set(key, repr(before), ttl=self._settings.max_age + 60)

    async def _without_voided(self, session: Session) -> Session:
        """`session`, without its step-up if that one was voided (a store read only when the cookie carries one)."""
        step_up = session.step_up
        if step_up is None:
            return session
        raw = await self._store.get(self._void_key(session.user.id))
        try:
            voided = raw is not None and step_up.at <= float(raw)
        except ValueError:
            voided = True  # unreadable: fail closed
        return replace(session, step_up=None) if voided else session

    def policy(self, action: str | None, max_age: int | None = None) -> Policy:
        return resolve(self._settings, action, max_age)

    # -- the flow --------------------------------------------------------------------------------------------------

    async def start(self, session: Session, transaction_id: str | None = None) -> Started:
        """Begin a challenge; with `transaction_id`, one that confirms that pending transaction (and only it)."""
        user_id = session.user.id
        binding = _session_binding(session.id)
        pending = await self._pending(session, transaction_id) if transaction_id is not None else None
        async with self._failures_recorded(user_id):
            await self._challenges.attempts.refuse_if_blocked(user_id)
        await self._challenges.count_start(user_id)
        challenge_id = secrets.token_urlsafe(16)
        state: dict[str, object] = {"challengeId": challenge_id, "session": binding}
        if pending is not None:
            # FusionAuth keeps the state with the challenge and echoes it when the code is right; its message
            # templates may show the summary (kickstart/email-mfa.json). Neither is a secret: the 401 carried both.
            state["transaction"] = {"id": pending.id, "summary": pending.summary}
            # The pending transaction lives as long as the challenge that confirms it.
            await self._store.set(
                self._pending_key(user_id, pending.id), pending.dumps(), ttl=self._settings.challenge_ttl + 60
            )
        async with self._failures_recorded(user_id):  # FusionAuth's lock may be met here too
            try:
                started = await self._fusionauth.start_two_factor(user_id=user_id, state=state)
            except TwoFactorFailed as exc:
                raise self._challenges.map_failure(exc, "start") from exc
        methods = started.methods
        policy = self.policy(pending.action) if pending is not None else None
        if policy is not None and policy.methods is not None:
            methods = [method for method in methods if method.method in policy.methods]
            if started.methods and not methods:
                raise NoSecondFactor(
                    "This action needs a second factor of a kind your account does not have: "
                    + ", ".join(sorted(policy.methods))
                    + "."
                )
        if not methods:
            # The start code would still work as an out-of-band code, but this product has no channel of its own
            # to deliver it, and it must never reach the browser.
            raise NoSecondFactor()
        # Starting again replaces the previous challenge of this session.
        challenge = await self._challenges.open(
            binding, user_id, challenge_id, started.twoFactorId, methods, bound_to=pending.id if pending else None
        )
        logger.info("step-up started: user=%s methods=%s", user_id, ",".join(m.method for m in challenge.methods))
        detail: dict[str, str | list[str]] = {"methods": sorted({m.method for m in challenge.methods})}
        if pending is not None:
            detail |= {"action": pending.action, "transaction": pending.id}
        await self._activity.record(user_id, "step_up_started", **detail)
        return Started(challenge, pending)

    async def send(self, session: Session, method_id: str) -> Sent:
        """Send a code by email/SMS: the method, seconds until another send, and sends remaining."""
        async with self._failures_recorded(session.user.id):
            sent = await self._challenges.send(_session_binding(session.id), session.user.id, method_id)
        await self._activity.record(session.user.id, "step_up_code_sent", method=sent.method.method)
        return sent

    async def finish(
        self, session: Session, code: str, ip_address: str | None, method_id: str | None = None
    ) -> Finished:
        """Check the code with FusionAuth; on success return the rotated, stepped-up session.

        `method_id` (optional) says which method the person used; it only labels the result and grants nothing."""
        binding = _session_binding(session.id)

        async def complete(challenge: Challenge) -> TwoFactorLogin:
            return await self._fusionauth.complete_two_factor(
                two_factor_id=challenge.two_factor_id, code=code, ip_address=ip_address
            )

        def accept(challenge: Challenge, answer: TwoFactorLogin) -> bool:
            # FusionAuth must vouch for this session's user, for the challenge this session started, and for the
            # transaction that challenge confirms.
            state = answer.state or {}
            confirmed = state.get("transaction")
            echoed = confirmed.get("id") if isinstance(confirmed, dict) else None
            return (
                answer.user.id == session.user.id
                and state.get("challengeId") == challenge.id
                and echoed == challenge.bound_to
            )

        async with self._failures_recorded(session.user.id):
            verified = await self._challenges.verify(
                binding, session.user.id, complete, method_id=method_id, accept=accept
            )
        pending = None
        if verified.challenge.bound_to is not None:
            raw = await self._store.pop(self._pending_key(session.user.id, verified.challenge.bound_to))
            pending = Pending.loads(raw) if raw is not None else None
            if pending is None or pending.session != await self._lineage(session):
                raise TransactionExpired()
            step_up = await self._grant_bound(session.user.id, verified.method, pending)
        else:
            step_up = await self.grant(session.user.id, verified.method)
        try:
            rotated = await self._sessions.rotate(session, step_up)
        except LookupError as exc:
            raise LoginRequired("Your session ended during the step-up. Sign in again.") from exc
        lineage = await self._lineage(session)
        if lineage is not None:
            # The other transactions this sign-in has waiting (several requests refused at once) stay confirmable.
            remaining = max(1.0, rotated.expires_at - self._clock.now())
            await self._store.set(self._lineage_key(session.user.id, rotated.id), lineage, ttl=remaining)
        logger.info("step-up completed: user=%s method=%s", session.user.id, verified.method)
        detail: dict[str, str] = {"method": verified.method}
        if (reference := grant_reference(step_up.grant)) is not None:
            detail["grant"] = reference
        if pending is not None:
            detail |= {"action": pending.action, "transaction": pending.id}
        await self._activity.record(session.user.id, "step_up_verified", **detail)
        return Finished(rotated, pending)

    async def cancel(self, session: Session) -> None:
        await self._challenges.discard(_session_binding(session.id))

    async def void(self, session: Session) -> None:
        """Make the session's step-up worthless in the store (its grant, single-use or bound). The time window a cookie
        records without a grant is voided by giving the session a new id, which the caller does."""
        step_up = session.step_up
        if step_up is not None and step_up.grant is not None:
            await self._store.delete(self._grant_key(session.user.id, step_up.grant))

    async def grant(self, user_id: str, method: str) -> StepUp:
        """The record of a second factor completed just now, for the session cookie, and the grant a single-use
        action may consume once (kept in the store: it ends with the session). Sign-in with a second factor counts
        as one too."""
        now = self._clock.now()
        grant = secrets.token_urlsafe(16)
        await self._store.set(self._grant_key(user_id, grant), user_id, ttl=self._settings.max_age)
        return StepUp(at=now, until=now + self._settings.max_age, method=method, grant=grant)

    async def _grant_bound(self, user_id: str, method: str, pending: Pending) -> StepUp:
        """A grant for the one transaction `pending` confirmed: good once, for its action's max_age."""
        policy = self.policy(pending.action)
        now = self._clock.now()
        grant = secrets.token_urlsafe(16)
        record = json.dumps({"user": user_id, "action": pending.action, "digest": pending.digest})
        await self._store.set(self._grant_key(user_id, grant), record, ttl=policy.max_age)
        return StepUp(at=now, until=now + policy.max_age, method=method, grant=grant, transaction=pending.id)

    async def _pending(self, session: Session, transaction_id: str) -> Pending:
        raw = await self._store.get(self._pending_key(session.user.id, transaction_id))
        pending = Pending.loads(raw) if raw is not None else None
        if pending is None or pending.session != await self._lineage(session):
            raise TransactionExpired()
        return pending

    @asynccontextmanager
    async def _failures_recorded(self, user_id: str) -> AsyncIterator[None]:
        """Record the wrong codes, blocks and locks the block raises (and raise them on)."""
        try:
            yield
        except InvalidCode as exc:
            remaining = int(exc.extra.get("attempts_remaining", 0))
            await self._activity.record(user_id, "step_up_wrong_code", "failure", attempts_remaining=remaining)
            raise
        except (StepUpBlocked, TemporarilyLocked) as exc:
            wait = int(exc.extra.get("retry_after", 0))
            # FusionAuth's own pause (the tenant's lockout) is told apart from ours by its reason.
            locked = {"reason": "account_locked"} if isinstance(exc, TemporarilyLocked) else {}
            await self._activity.record(user_id, "step_up_blocked", "refused", retry_after=wait, **locked)
            raise
        except StepUpLocked:
            await self._activity.record(user_id, "step_up_locked", "refused")
            raise

    # -- the guard -------------------------------------------------------------------------------------------------

    def is_fresh(self, step_up: StepUp, max_age: int) -> bool:
        now = self._clock.now()
        return now < step_up.until and now - step_up.at < max_age

    @staticmethod
    def _method_allowed(policy: Policy, step_up: StepUp) -> bool:
        # For a bound action the challenge offered only the allowed methods; for an unbound one this is the method
        # the step-up was completed with, as the person chose it (FusionAuth does not say which a code came from).
        return policy.methods is None or step_up.method in policy.methods

    async def status(self, session: Session) -> StepUp | None:
        """The step-up that the next privileged request of an unbound action would accept, if any. A step-up bound
        to a transaction is not one: it confirmed that one request, and elevates nothing else."""
        step_up = session.step_up
        if step_up is None or step_up.transaction is not None or not self.is_fresh(step_up, self._settings.max_age):
            return None
        # A step-up voided by a changed password or second factor (void_step_ups) is not looked up here: this answers
        # every GET /api/session, and the guard (authorize) is where it is refused. The badge may show it until then.
        if self._settings.single_use and (
            step_up.grant is None or await self._store.get(self._grant_key(session.user.id, step_up.grant)) is None
        ):
            return None
        return step_up

    async def authorize(self, session: Session, policy: Policy, transaction: Transaction | None) -> Authorization:
        """Let a privileged request through, or raise the RFC 9470 challenge.

        A single-use grant is consumed here, and `restore` puts it back: FastAPI runs dependencies before it
        reports invalid input, and a request refused for its input did nothing, so it must not cost the person
        their step-up."""
        if transaction is not None and transaction.already_done:
            # An idempotent repeat of a request that already ran: it will answer with the original, and runs nothing.
            return Authorization(policy, None, None)
        session = await self._without_voided(session)
        if policy.bound:
            if transaction is None or policy.action is None:
                # settings/policy.check_routes refuses this configuration at start-up; fail closed all the same.
                logger.error("action %s is bound but its route describes no transaction", policy.action)
                raise AppError("This action cannot be confirmed.")
            return await self._authorize_bound(session, policy, transaction)
        step_up = session.step_up
        if (
            step_up is None
            or step_up.transaction is not None  # a confirmation of one transaction elevates nothing else
            or not self.is_fresh(step_up, policy.max_age)
            or not self._method_allowed(policy, step_up)
        ):
            raise self._challenge(policy)
        if not policy.single_use:
            return Authorization(policy, step_up, None)
        # Consumed atomically: of two requests riding one grant, exactly one gets through.
        key = self._grant_key(session.user.id, step_up.grant) if step_up.grant else None
        owner = await self._store.pop(key) if key else None
        if key is None or owner != session.user.id:
            raise self._challenge(policy)
        return Authorization(policy, step_up, self._restorer(key, owner, step_up))

    async def _authorize_bound(self, session: Session, policy: Policy, transaction: Transaction) -> Authorization:
        assert policy.action is not None  # noqa: S101 - checked by authorize()
        user_id = session.user.id
        digest = transaction.digest(policy.action, user_id)
        step_up = session.step_up
        reason: TransactionRefusal | None = None
        if step_up is None:
            reason = "no_step_up"
        elif step_up.transaction is None or step_up.grant is None:
            reason = "unbound"  # an unbound step-up is accepted only by unbound actions
        elif not self.is_fresh(step_up, policy.max_age):
            reason = "expired"
        else:
            key = self._grant_key(user_id, step_up.grant)
            # Consumed atomically whatever it holds: of concurrent requests riding one grant, at most one gets it,
            # and a request that does not match what was confirmed uses it up (Transaction Authorization CS 2.6:
            # a change of the transaction's data voids its confirmation).
            raw = await self._store.pop(key)
            record = _grant_record(raw)
            if record is None or record.get("user") != user_id:
                reason = "used"
            elif record.get("action") != policy.action:
                reason = "other_action"
            elif record.get("digest") != digest:
                reason = "mismatch"
            else:
                assert raw is not None  # noqa: S101 - a record was read from it
                return Authorization(policy, step_up, self._restorer(key, raw, step_up))
        if self._metrics is not None:
            self._metrics.transaction_refused(policy.action, reason)
        logger.info("bound action refused: user=%s action=%s reason=%s", user_id, policy.action, reason)
        raise await self._challenge_transaction(session, policy, transaction, digest, reason)

    def _restorer(self, key: str, value: str, step_up: StepUp) -> Callable[[], Awaitable[None]]:
        async def restore() -> None:
            remaining = step_up.until - self._clock.now()
            if remaining > 0:
                await self._store.add(key, value, ttl=remaining)

        return restore

    def _challenge(self, policy: Policy) -> InsufficientUserAuthentication:
        return InsufficientUserAuthentication(
            max_age=policy.max_age,
            action=policy.action,
            methods=sorted(policy.methods) if policy.methods is not None else None,
        )

    async def _challenge_transaction(
        self, session: Session, policy: Policy, transaction: Transaction, digest: str, reason: str
    ) -> InsufficientUserAuthentication:
        """The challenge for this very request: its transaction is kept pending, for a step-up to confirm."""
        assert policy.action is not None  # noqa: S101 - only bound actions get here
        # Each refusal keeps a record in the store: a signed-in client sending request after request must not be able
        # to fill it. Far more than a person confirms in a few minutes; past it, wait (the window is challenge_ttl).
        counter = user_key("pending-transactions", session.user.id)
        if await self._store.incr(counter, ttl=self._settings.challenge_ttl) > MAX_PENDING:
            raise TooManyPending(retry_after=await retry_after(self._store, counter))
        lineage = await self._lineage(session, create=True)
        assert lineage is not None  # noqa: S101 - created above
        pending = Pending(
            id="tx_" + secrets.token_urlsafe(16),
            action=policy.action,
            digest=digest,
            summary=transaction.summary,
            session=lineage,
        )
        # Long enough to read the dialog and start; a started challenge keeps it alive for as long as it lives.
        await self._store.set(
            self._pending_key(session.user.id, pending.id), pending.dumps(), ttl=self._settings.challenge_ttl
        )
        return InsufficientUserAuthentication(
            max_age=policy.max_age,
            action=policy.action,
            transaction={"id": pending.id, "summary": pending.summary},
            methods=sorted(policy.methods) if policy.methods is not None else None,
            description=_REFUSALS.get(reason),
        )

    def action_event(self, session: Session, authorization: Authorization) -> PendingEvent | None:
        """The event that a privileged request ran, with the grant and transaction it rode on, ready for the action's
        own transaction (deps.require_privileged_action) or for `executed`; None for an idempotent repeat."""
        step_up = authorization.step_up
        if step_up is None:
            return None  # an idempotent repeat: nothing runs
        detail: dict[str, str] = {"method": step_up.method}
        if authorization.policy.action is not None:
            detail["action"] = authorization.policy.action
        if (reference := grant_reference(step_up.grant)) is not None:
            detail["grant"] = reference
        if step_up.transaction is not None:
            detail["transaction"] = step_up.transaction
        return self._activity.prepare(session.user.id, "privileged_action", **detail)

    async def executed(self, event: PendingEvent | None) -> None:
        """Record that a privileged request ran, in a transaction of its own (after the action's)."""
        if event is not None:
            await self._activity.append(event)

    def executed_with_action(self, event: PendingEvent) -> None:
        """The action's own transaction has committed its event (deps.require_privileged_action)."""
        self._activity.joined(event)


def _grant_record(raw: str | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # an unbound grant (its value is the user id): not one a bound action accepts
    return record if isinstance(record, dict) else None
