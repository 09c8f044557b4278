"""One error hierarchy, mapped to JSON by one handler.

    AppError (500 internal_error)
    ├── InvalidRequest (400 invalid_request)
    ├── LoginRequired (401 login_required)
    ├── InsufficientUserAuthentication (401 insufficient_user_authentication)
    ├── InvalidSignature (401 invalid_signature: a webhook not signed by FusionAuth's webhook key over its body)
    ├── CsrfRejected (403 csrf_rejected)
    ├── NotFound (404 not_found)
    ├── MethodNotAllowed (405 method_not_allowed, with Allow)
    ├── RequestTooLarge (413 request_too_large)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── IdempotencyKeyReused (422 idempotency_key_reused)
    ├── NotReady (503 not_ready, checks: GET /readyz)
    ├── LoginFailed (400, browser navigations only; carries the redirect code)
    ├── SignInError: native sign-in's own answers (POST /auth/native/*)
    │   ├── InvalidCredentials (401 invalid_credentials: unknown user and wrong password alike)
    │   ├── SignInRefused (403 account_locked / login_prevented / account_expired / password_change_required /
    │   │                  verification_required / not_registered / second_factor_setup_required)
    │   └── TooManyAttempts (429 too_many_attempts, retry_after)
    ├── StepUpError: the step-up API's own answers
    │   ├── InvalidCode (400 invalid_code, attempts_remaining)
    │   ├── InvalidMethod (400 invalid_method)
    │   ├── StepUpRejected (403 account_locked / account_expired / login_prevented / step_up_rejected)
    │   ├── StepUpLocked (403 step_up_locked)
    │   ├── NoChallenge (409 no_challenge)
    │   ├── NoSecondFactor (409 no_second_factor)
    │   ├── StepUpInProgress (409 step_up_in_progress)
    │   ├── ChallengeExpired (410 challenge_expired)
    │   ├── TransactionExpired (410 transaction_expired)
    │   ├── ResendTooSoon (429 resend_too_soon, retry_after)
    │   ├── TooManySends (429 too_many_sends)
    │   ├── TooManyStarts (429 too_many_starts, retry_after)
    │   ├── TooManyPending (429 too_many_pending, retry_after): a bound action's refusals, per user
    │   ├── StepUpBlocked (429 step_up_blocked, retry_after)
    │   └── TemporarilyLocked (429 temporarily_locked, retry_after, locked_until): FusionAuth's lock with an end
    ├── ReauthenticationRequired (401 reauthentication_required, max_age): adding a factor needs a recent sign-in
    ├── FactorError (400 factor_error): the second factors a person manages
    │   ├── FactorChangeRefused (403 factor_change_refused)
    │   ├── FactorNotFound (404 factor_not_found)
    │   ├── NoEnrolment (409 no_enrolment)
    │   └── EnrolmentExpired (410 enrolment_expired)
    ├── FusionAuthError (502 fusionauth_error)
    │   ├── FusionAuthUnavailable (503 fusionauth_unavailable)
    │   └── FusionAuthTimeout (504 fusionauth_timeout)
    └── StoreUnavailable (503 store_unavailable): storage.url (sessions, challenges, counters) failed
        └── DatabaseUnavailable (503 database_unavailable): database.url (telegrams) failed

JSON bodies are
`{"error": "<code>", "error_description": "...", **extra}`; browser navigations (GET /auth/*) get a redirect to
`/?error=<code>` instead, because a person, not a script, is looking at the answer.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .clock import iso
from .web.methods import allowed_methods

logger = logging.getLogger(__name__)


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    description: ClassVar[str] = "Something went wrong on our side."

    def __init__(
        self,
        description: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(description or self.description)
        self.headers = dict(headers or {})
        self.extra = extra

    @property
    def error_code(self) -> str:
        return self.code

    def body(self) -> dict[str, Any]:
        return {"error": self.error_code, "error_description": str(self), **self.extra}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.error_code!r}, description={str(self)!r})"


class InvalidRequest(AppError):
    status_code = 400
    code = "invalid_request"
    description = "The request is not valid."


class LoginRequired(AppError):
    status_code = 401
    code = "login_required"
    description = "Sign in first."


class InvalidSignature(AppError):
    """POST /webhooks/fusionauth without a valid signature of FusionAuth's webhook key over its body: nothing done."""

    status_code = 401
    code = "invalid_signature"
    description = "This webhook is not signed with the key it must be signed with."


# RFC 9110 section 5.6.2: a token, so an auth-param value that is one needs no quoting rules of its own. Every value we
# put in the challenge header is one of these (an action name from the settings, an id we made, a number); anything
# else is refused rather than escaped.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


def _auth_param(name: str, value: str) -> str:
    """`name="value"` for WWW-Authenticate (RFC 9110 section 11.2: auth-param = token BWS "=" BWS quoted-string)."""
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"challenge parameter {name} is not a token")
    return f'{name}="{value}"'


class InsufficientUserAuthentication(AppError):
    """RFC 9470: the session is fine, but this action needs a fresher second factor.

    For a named action the challenge says which (`action`, an extension auth-param); for an action bound to its
    transaction it carries the transaction this step-up must confirm: its id in the header and in the body, and its
    summary in the body only. The summary is the person's own text (a recipient, a message): in a header it would
    need RFC 8187 encoding that few clients decode, it would be copied into proxies' logs, and every quote, backslash
    or line break in it would be one more way to break the header's syntax. The JSON body carries it safely, and the
    SPA renders it as text."""

    status_code = 401
    code = "insufficient_user_authentication"
    description = "Confirm it's you with your second factor to continue."

    def __init__(
        self,
        *,
        max_age: int,
        action: str | None = None,
        transaction: Mapping[str, str] | None = None,
        methods: list[str] | None = None,
        description: str | None = None,
    ) -> None:
        # RFC 9470 section 3: the challenge travels in WWW-Authenticate with the same error and max_age, so
        # any RFC 9470-aware client can react without parsing our JSON.
        params = [
            _auth_param("error", self.code),
            'error_description="A second factor is required"',
            _auth_param("max_age", str(max_age)),
        ]
        extra: dict[str, Any] = {"max_age": max_age}
        if action is not None:
            params.append(_auth_param("action", action))
            extra["action"] = action
        if transaction is not None:
            params.append(_auth_param("transaction_id", transaction["id"]))
            extra["transaction"] = {"id": transaction["id"], "summary": transaction["summary"]}
        if methods is not None:
            extra["methods"] = methods
        super().__init__(description, headers={"WWW-Authenticate": "Bearer " + ", ".join(params)}, **extra)


class CsrfRejected(AppError):
    status_code = 403
    code = "csrf_rejected"
    description = "This request did not come from the application."


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    description = "Nothing here."


class MethodNotAllowed(AppError):
    status_code = 405
    code = "method_not_allowed"
    description = "This method is not allowed here."


class RequestTooLarge(AppError):
    status_code = 413
    code = "request_too_large"
    description = "The request body is too large."


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"
    description = "Send JSON (Content-Type: application/json)."


class IdempotencyKeyReused(AppError):
    """draft-ietf-httpapi-idempotency-key-header: the same key with a different request is a client error."""

    status_code = 422
    code = "idempotency_key_reused"
    description = "This Idempotency-Key was already used for a different telegram."


class NotReady(AppError):
    """GET /readyz: a dependency does not answer; `checks` says which ("ok" or how each failed)."""

    status_code = 503
    code = "not_ready"
    description = "Not ready to serve requests."

    def __init__(self, checks: Mapping[str, str]) -> None:
        failing = ", ".join(name for name, verdict in checks.items() if verdict != "ok")
        super().__init__(f"Not ready: {failing} not answering.", checks=dict(checks))


class LoginFailed(AppError):
    """A sign-in navigation failed; the browser is sent home with `?error=<reason>`."""

    status_code = 400
    code = "login_failed"
    description = "Sign-in failed."

    def __init__(self, reason: str, description: str | None = None) -> None:
        super().__init__(description)
        self.reason = reason

    @property
    def error_code(self) -> str:
        return self.reason


class _Refusal(AppError):
    """FusionAuth refused because of the account's state: the code is the reason, from a fixed vocabulary, and the
    description says what to do."""

    status_code = 403

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason

    @property
    def error_code(self) -> str:
        return self.reason


class _RetryLater(AppError):
    """429 with `retry_after`, in the body and in Retry-After."""

    status_code = 429

    def __init__(self, *, retry_after: int, description: str | None = None, **extra: Any) -> None:
        super().__init__(description, headers={"Retry-After": str(retry_after)}, retry_after=retry_after, **extra)


class SignInError(AppError):
    status_code = 400
    code = "sign_in_error"


class InvalidCredentials(SignInError):
    """Wrong password and unknown user get this very answer, so it tells nobody whether an account exists."""

    status_code = 401
    code = "invalid_credentials"
    description = "That email or username and password do not match an account. Check them and try again."


class SignInRefused(_Refusal, SignInError):
    """FusionAuth knows the person but will not sign them in here."""

    status_code = 403
    code = "sign_in_refused"
    description = "The sign-in service refused the sign-in."


class TooManyAttempts(_RetryLater, SignInError):
    """Too many failed sign-ins for this login id or from this address: refused before FusionAuth is asked."""

    code = "too_many_attempts"
    description = "Too many failed sign-ins. Wait before trying again."


class StepUpError(AppError):
    status_code = 400
    code = "step_up_error"


class InvalidCode(StepUpError):
    status_code = 400
    code = "invalid_code"
    description = "That code is not right."

    def __init__(self, *, attempts_remaining: int) -> None:
        description = (
            "That code is not right." if attempts_remaining else "Too many wrong codes. Start the step-up again."
        )
        super().__init__(description, attempts_remaining=attempts_remaining)


class InvalidMethod(StepUpError):
    status_code = 400
    code = "invalid_method"
    description = "Choose one of the email or text-message methods offered; authenticator codes are not sent."


class StepUpRejected(_Refusal, StepUpError):
    """FusionAuth verified nothing because of the account's state (locked, expired, login prevented)."""

    status_code = 403
    code = "step_up_rejected"
    description = "The sign-in service refused the step-up."


class StepUpLocked(StepUpError):
    """NIST 800-63B 5.2.2: after max_consecutive_failures wrong codes in a row, no more guesses until reset."""

    status_code = 403
    code = "step_up_locked"
    description = "Too many wrong codes on this account: step-up is locked. Contact support to unlock it."


class NoChallenge(StepUpError):
    status_code = 409
    code = "no_challenge"
    description = "There is no step-up in progress. Start one first."


class NoSecondFactor(StepUpError):
    status_code = 409
    code = "no_second_factor"
    description = (
        "Your account has no second factor yet. Set up an authenticator app (or email codes) in your FusionAuth "
        "account first, then try again."
    )


class StepUpInProgress(StepUpError):
    status_code = 409
    code = "step_up_in_progress"
    description = "This code is already being checked."


class TransactionExpired(StepUpError):
    """The transaction a step-up was asked to confirm is not pending for this session (never was, or expired)."""

    status_code = 410
    code = "transaction_expired"
    description = "This confirmation is no longer pending. Send the request again to confirm it."


class ChallengeExpired(StepUpError):
    status_code = 410
    code = "challenge_expired"
    description = "This challenge expired. Start again."


class ResendTooSoon(_RetryLater, StepUpError):
    code = "resend_too_soon"
    description = "A code was sent a moment ago. Wait before asking for another."


class TooManySends(StepUpError):
    status_code = 429
    code = "too_many_sends"
    description = "No more codes can be sent for this challenge. Start again."


class TooManyStarts(_RetryLater, StepUpError):
    code = "too_many_starts"
    description = "Too many step-ups were started. Wait a while before starting another."


class TooManyPending(_RetryLater, StepUpError):
    code = "too_many_pending"
    description = "Too many requests are waiting for a confirmation. Wait a moment, then send again."


class StepUpBlocked(_RetryLater, StepUpError):
    code = "step_up_blocked"
    description = "Too many wrong codes. Step-up is blocked for a while."


class TemporarilyLocked(_RetryLater, StepUpError):
    """FusionAuth refused (409) because of a login-preventing action that ends: typically the tenant's
    failed-authentication lockout after wrong codes or passwords (docs/fusionauth.md §4). Unlike `login_prevented`,
    waiting helps, so the answer says until when: `locked_until` (ISO 8601, UTC) and `retry_after` (seconds).

    429 rather than 423: 423 is WebDAV's "this resource is locked" (RFC 4918 section 11.3), for which Retry-After
    means nothing and which generic clients treat as final; 429 with Retry-After (RFC 6585 section 4, RFC 9110
    section 10.2.3) is the status HTTP clients and proxies know as "wait, then try again", and the one every other
    wait of this API answers (step_up_blocked, too_many_starts). Not 403: that says trying again will not help."""

    code = "temporarily_locked"
    description = "Your account is locked until the time given. Try again then."

    def __init__(self, *, locked_until: float, now: float) -> None:
        super().__init__(
            retry_after=max(1, math.ceil(locked_until - now)),
            locked_until=iso(locked_until),
        )


class ReauthenticationRequired(AppError):
    """Adding a second factor needs a recent sign-in (enrolment.max_auth_age): a password typed in the last `max_age`
    seconds, not just a session. RFC 9470's challenge says exactly that (max_age is the age of the authentication
    itself), so any RFC 9470 client knows what to do; the body's code tells the SPA this is a sign-in, not a second
    factor."""

    status_code = 401
    code = "reauthentication_required"
    description = "Sign in again to continue: adding a second factor needs a sign-in from the last few minutes."

    def __init__(self, *, max_age: int) -> None:
        challenge = ", ".join(
            (
                _auth_param("error", InsufficientUserAuthentication.code),
                'error_description="A recent sign-in is required"',
                _auth_param("max_age", str(max_age)),
            )
        )
        super().__init__(headers={"WWW-Authenticate": "Bearer " + challenge}, max_age=max_age)


class FactorError(AppError):
    status_code = 400
    code = "factor_error"


class FactorNotFound(FactorError):
    status_code = 404
    code = "factor_not_found"
    description = "Your account has no such second factor."


class NoEnrolment(FactorError):
    status_code = 409
    code = "no_enrolment"
    description = "There is no authenticator app being set up. Start again."


class EnrolmentExpired(FactorError):
    status_code = 410
    code = "enrolment_expired"
    description = "Setting up the authenticator app took too long. Start again for a new code to scan."


class FactorChangeRefused(FactorError):
    """FusionAuth refused to add or remove the method (its 400: the tenant does not offer it, a paid feature)."""

    status_code = 403
    code = "factor_change_refused"
    description = "The sign-in service refused this change to your second factors."


class FusionAuthError(AppError):
    status_code = 502
    code = "fusionauth_error"
    description = "The sign-in service gave an unexpected answer. Try again in a moment."


class FusionAuthUnavailable(FusionAuthError):
    status_code = 503
    code = "fusionauth_unavailable"
    description = "The sign-in service cannot be reached. Try again in a moment."


class FusionAuthTimeout(FusionAuthError):
    status_code = 504
    code = "fusionauth_timeout"
    description = "The sign-in service did not answer in time. Try again in a moment."


class StoreUnavailable(AppError):
    """The store (storage.url: Redis or SQLite) failed. Fail closed: a request that needs state gets this 503, never
    an anonymous answer, a grant or a 500. Raised by the store implementations, which translate their library's
    errors; the next request tries again, so the service recovers by itself when the store comes back."""

    status_code = 503
    code = "store_unavailable"
    description = "The service cannot reach its session store right now. Try again in a moment."


class DatabaseUnavailable(StoreUnavailable):
    """The durable records (database.url: PostgreSQL or SQLite) failed: a telegram that could not be committed is
    this 503, never a 201. A subclass, so `except StoreUnavailable` covers both; its own code tells operators which
    backend to look at."""

    code = "database_unavailable"
    description = "The service cannot reach its database right now. Nothing was saved; try again in a moment."


_UNDO_KEY = "undo_on_invalid_input"


def on_invalid_input(request: Request, undo: Callable[[], Awaitable[None]]) -> None:
    """Have `undo` run if this request is then refused for its input (RequestValidationError): a guard that
    consumed something (a single-use step-up grant) gives it back, since the route never ran."""
    request.scope.setdefault("state", {}).setdefault(_UNDO_KEY, []).append(undo)


def _is_browser_navigation(request: Request) -> bool:
    return request.method == "GET" and request.url.path.startswith("/auth/")


def error_response(request: Request, exc: AppError) -> Response:
    if _is_browser_navigation(request):
        # 303 so the browser always follows with a GET, whatever brought it here.
        return RedirectResponse(f"/?error={exc.error_code}", status_code=303)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)  # resolved by MRO: covers every subclass
    async def _app_error(request: Request, exc: AppError) -> Response:
        if exc.status_code >= 500:
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc.error_code)
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        for undo in request.scope.get("state", {}).get(_UNDO_KEY, []):
            try:
                await undo()
            except AppError as failed:  # the store went away meanwhile: say so (503), never a 500
                return error_response(request, failed)
        # Only where and what, never the rejected input: it may be a one-time code or a token.
        # A body shared by a route and its guard's dependency is checked once for each: say each problem once.
        problems = "; ".join(
            dict.fromkeys(
                f"{'.'.join(str(part) for part in error['loc'] if part != 'body') or 'body'}: {error['msg']}"
                for error in exc.errors()
            )
        )
        return error_response(request, InvalidRequest(problems or None))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        mapped: AppError
        if exc.status_code == 404:
            mapped = NotFound()
        elif exc.status_code == 405:
            # RFC 9110 section 15.5.6: a 405 says which methods the path does take.
            mapped = MethodNotAllowed(headers={"Allow": allowed_methods(request)})
        else:
            mapped = InvalidRequest()
        return error_response(request, mapped)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        # The traceback goes to the server log (Starlette re-raises after this); the client gets no details.
        return JSONResponse(AppError().body(), status_code=500)
