"""Response bodies, so the OpenAPI document describes exactly what the SPA receives."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..auth.sessions import Session, SessionSummary, StepUp
from ..clock import iso
from ..stepup.challenge import Challenge, Sent
from ..stepup.factors import TOTP_ALGORITHM, TOTP_DIGITS, TOTP_PERIOD, Enrolment, Factor
from ..stepup.service import Pending
from ..stepup.transaction import Transaction, displayable, excerpt

# How much of a telegram's message the confirmation shows: enough to recognise it, short enough to read at a glance.
SUMMARY_EXCERPT = 40


class UserOut(BaseModel):
    id: str
    email: str | None
    name: str


class StepUpStatus(BaseModel):
    active: bool
    expires_at: str | None = None
    method: str | None = None


class SessionOut(BaseModel):
    authenticated: bool
    # Signed out only: the ways this BFF offers to sign in ("native" = our own form, "hosted" = FusionAuth's page).
    sign_in: list[str] | None = None
    user: UserOut | None = None
    signed_in_at: str | None = None
    expires_at: str | None = None
    idle_expires_at: str | None = None
    step_up: StepUpStatus | None = None

    @classmethod
    def of(cls, session: Session, fresh: StepUp | None) -> Self:
        """A signed-in session; `fresh` is the step-up the next privileged request would accept, if any."""
        if fresh is not None:
            step_up = StepUpStatus(active=True, expires_at=iso(fresh.until), method=fresh.method)
        else:
            step_up = StepUpStatus(active=False)
        return cls(
            authenticated=True,
            user=UserOut(id=session.user.id, email=session.user.email, name=session.user.name),
            signed_in_at=iso(session.signed_in_at),
            expires_at=iso(session.expires_at),
            idle_expires_at=iso(session.idle_expires_at),
            step_up=step_up,
        )


class ReadyOut(BaseModel):
    status: str
    checks: dict[str, str]  # probe name -> "ok"


class LogoutOut(BaseModel):
    redirect: str


class _Input(BaseModel):
    # Unknown fields are an error: a typo in a client should fail loudly, not be ignored.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class StepUpMethodOut(BaseModel):
    id: str
    method: str
    hint: str
    last_used: bool


class TransactionOut(BaseModel):
    """A transaction a step-up confirms: its id, and what it is in words (the person's own text: show it as text)."""

    id: str
    action: str
    summary: str

    @classmethod
    def of(cls, pending: Pending) -> TransactionOut:
        return cls(id=pending.id, action=pending.action, summary=pending.summary)


class StepUpStartIn(_Input):
    # The transaction this step-up confirms, as the 401 named it; none for an unbound step-up.
    transaction_id: Annotated[str | None, Field(pattern=r"^tx_[A-Za-z0-9_-]{16,64}$")] = None


class StepUpStartOut(BaseModel):
    """A challenge as the browser sees it (step-up start, and the second factor of a native sign-in)."""

    methods: list[StepUpMethodOut]
    expires_at: str
    transaction: TransactionOut | None = None

    @classmethod
    def of(cls, challenge: Challenge, transaction: Pending | None = None) -> StepUpStartOut:
        return cls(
            methods=[
                StepUpMethodOut(id=m.id, method=m.method, hint=m.hint, last_used=m.last_used) for m in challenge.methods
            ],
            expires_at=iso(challenge.expires_at),
            transaction=TransactionOut.of(transaction) if transaction is not None else None,
        )


class StepUpSendIn(_Input):
    method_id: Annotated[str, Field(min_length=1, max_length=64)]


class StepUpSendOut(BaseModel):
    sent_to: str
    retry_after: int
    sends_remaining: int

    @classmethod
    def of(cls, sent: Sent) -> StepUpSendOut:
        return cls(sent_to=sent.method.hint, retry_after=sent.retry_after, sends_remaining=sent.sends_remaining)


# Six-digit codes, and FusionAuth's longer recovery codes; never echoed back in errors.
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]


class StepUpFinishIn(_Input):
    code: Code
    method_id: Annotated[str | None, Field(max_length=64)] = None


class StepUpFinishOut(BaseModel):
    # The session's elevation (inactive after a bound step-up: it confirmed one request and elevates nothing else).
    step_up: StepUpStatus
    transaction: TransactionOut | None = None  # what this step-up confirmed, for a bound one


class TelegramIn(_Input):
    recipient: Annotated[str, Field(min_length=1, max_length=100)]
    message: Annotated[str, Field(min_length=1, max_length=500)]

    def transaction(self, *, already_done: bool = False) -> Transaction:
        """What a step-up for this telegram confirms: who gets it and what is sung, exactly; in words, the recipient
        in full (it is the payee) and the start of the message."""
        summary = f"singing telegram to {displayable(self.recipient)} — “{excerpt(self.message, SUMMARY_EXCERPT)}”"
        return Transaction(
            fields={"recipient": self.recipient, "message": self.message}, summary=summary, already_done=already_done
        )


class TelegramOut(BaseModel):
    id: str
    recipient: str
    message: str
    created_at: str
    status: str


class TelegramListOut(BaseModel):
    telegrams: list[TelegramOut]


class NativeLoginIn(BaseModel):
    # Not _Input: a password is taken exactly as typed (spaces are characters). Never echoed back in errors.
    model_config = ConfigDict(extra="forbid")

    login_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=320)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class NativeLoginOut(SessionOut):
    """A session as GET /api/session describes it; or, while a second factor is due, `authenticated: false` and the
    challenge (the same methods and masking as step-up)."""

    two_factor: StepUpStartOut | None = None


class ActivityEventOut(BaseModel):
    """One event of the security activity log, as the person whose it is sees it."""

    id: int  # its place in the user's log (1, 2, 3...)
    at: str
    kind: str
    outcome: str
    address: str | None
    agent: str | None  # "Firefox on Linux"
    # The detail fields, each present only where the event has it (activity/log.py lists them all).
    via: str | None = None
    method: str | None = None
    methods: list[str] | None = None
    action: str | None = None
    transaction: str | None = None
    reason: str | None = None
    attempts_remaining: int | None = None
    retry_after: int | None = None


class ActivityListOut(BaseModel):
    events: list[ActivityEventOut]
    next_cursor: str | None  # pass it back as ?cursor= for the next (older) page; null: there is none


class SessionSummaryOut(BaseModel):
    id: str  # opaque: not the cookie's session id, and useless without this person's own cookie
    created_at: str
    last_seen_at: str
    agent: str | None  # a short label of the browser and system, "Firefox on Linux"
    address: str | None
    current: bool

    @classmethod
    def of(cls, summary: SessionSummary) -> Self:
        return cls(
            id=summary.id,
            created_at=iso(summary.created),
            last_seen_at=iso(summary.last_seen),
            agent=summary.agent,
            address=summary.address,
            current=summary.current,
        )


class SessionListOut(BaseModel):
    sessions: list[SessionSummaryOut]


class SignedOutEverywhereOut(BaseModel):
    ended: int  # sessions ended, this one included
    refresh_tokens_revoked: bool  # FusionAuth revoked every refresh token of the user for this application
    redirect: str  # FusionAuth's logout URL, to end its own sign-in session in this browser too


class WebhookOut(BaseModel):
    received: bool = True


# -- the second factors a person manages ---------------------------------------------------------------------------


class FactorOut(BaseModel):
    """A second factor as step-up shows it (the destination masked), with its name."""

    id: str
    method: str
    hint: str
    name: str | None
    last_used: bool

    @classmethod
    def of(cls, factor: Factor) -> FactorOut:
        return cls(id=factor.id, method=factor.method, hint=factor.hint, name=factor.name, last_used=factor.last_used)


class EnrolmentOptionsOut(BaseModel):
    """What adding a factor takes right now."""

    methods: list[str]  # what can be added here: ["authenticator"]
    reauthentication_required: bool  # a start now answers 401 reauthentication_required
    max_auth_age: int  # seconds a sign-in counts as recent
    step_up_required: bool  # a step-up is asked first (the person has a factor already)
    reauthenticate: list[str]  # the ways to sign in again: "native" (the password here), "hosted" (FusionAuth's page)


class FactorListOut(BaseModel):
    factors: list[FactorOut]
    enrolment: EnrolmentOptionsOut


class AuthenticatorStartOut(BaseModel):
    """A new authenticator secret, answered this once: the otpauth URI, its parts, and its QR code."""

    secret: str  # base32, to type in by hand
    otpauth_uri: str
    issuer: str
    account: str
    algorithm: str = TOTP_ALGORITHM
    digits: int = TOTP_DIGITS
    period: int = TOTP_PERIOD
    qr_code: str  # an SVG data: URI, rendered by the BFF
    expires_at: str

    @classmethod
    def of(cls, enrolment: Enrolment) -> AuthenticatorStartOut:
        return cls(
            secret=enrolment.secret,
            otpauth_uri=enrolment.uri,
            issuer=enrolment.issuer,
            account=enrolment.account,
            qr_code=enrolment.qr_code,
            expires_at=iso(enrolment.expires_at),
        )


# A name for people to tell their apps apart ("Work phone"): shown as text, never markup; no control characters.
FactorName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")
]


class AuthenticatorConfirmIn(_Input):
    code: Code
    name: FactorName | None = None


class AddedFactorOut(BaseModel):
    method: str
    name: str | None


class AuthenticatorConfirmOut(BaseModel):
    added: AddedFactorOut
    # The first factor's recovery codes, answered this once: nothing keeps them (FusionAuth hashes them at rest).
    recovery_codes: list[str] | None = None


class FactorRemoveIn(_Input):
    # A current code of the factor removed, or a recovery code (which removes every factor).
    code: Code


class FactorRemovedOut(BaseModel):
    removed: list[FactorOut]
    factors: list[FactorOut]  # what is left
