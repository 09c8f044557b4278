"""Prometheus metrics: every metric's name, labels and label values live here, and nowhere else.

Label values are always from a fixed set written in this module or in code (route templates, error codes), never
a user id, an email, a raw URL path or anything else a client controls: each distinct value is a time series
held forever by the scraper, and a path can carry a secret (FusionAuth's `twoFactorId` travels in one).

Exposition is never on the public listener. `stepup-bff serve` with `metrics.port` set serves `/metrics` on a
listener of its own, bound to `metrics.host` (default 127.0.0.1), from the supervising process.

Several workers: prometheus-client's multiprocess mode. `serve` gives every worker a private, empty directory in
$PROMETHEUS_MULTIPROC_DIR before anything imports prometheus-client; each worker writes its values to memory-mapped
files there, and the one listener sums them at scrape time (`MultiProcessCollector`). Chosen over one registry per
worker because the workers share one socket: a scraper cannot address a single worker, so per-worker registries
would answer each scrape with a random worker's numbers. Counters of a worker that died stay in the sum (a
counter must never go down); its live gauges are dropped by `mark_process_dead`, which `MetricsSupervisor` calls
for every worker that exits. Without `metrics.port` each app records into its own in-memory registry, which is
what tests read (`Metrics.registry`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from uvicorn.supervisors import Multiprocess

from ..errors import (
    AppError,
    ChallengeExpired,
    FusionAuthError,
    InvalidCode,
    LoginRequired,
    NoSecondFactor,
    ResendTooSoon,
    StepUpBlocked,
    StepUpLocked,
    StepUpRejected,
    TemporarilyLocked,
    TooManySends,
    TooManyStarts,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# -- bounded label values ---------------------------------------------------------------------------------------

# One fixed name per FusionAuthClient method; never the path, which carries twoFactorId and token ids.
FusionAuthOperation = Literal[
    "discovery",
    "jwks",
    "token",
    "refresh",
    "revoke_refresh_token",
    "revoke_user_refresh_tokens",
    "user_action",
    "two_factor_start",
    "two_factor_send",
    "two_factor_login",
    "login",
    "retrieve_user",
    "two_factor_secret",
    "enable_two_factor",
    "disable_two_factor",
    "readiness",
    "doctor",
]
FusionAuthOutcome = Literal["ok", "client_error", "server_error", "timeout", "unavailable", "error"]
StepUpStep = Literal["start", "send", "finish"]
StepUpOutcome = Literal[
    "started",
    "sent",
    "verified",
    "wrong_code",
    "blocked",
    "locked",
    "expired",
    "rate_limited",
    "rejected",
    "no_second_factor",
    "fusionauth_error",
    "login_required",
    "invalid",
]
# How a person signed in: FusionAuth's hosted page today; "native" is the BFF's own form.
SignInKind = Literal["hosted", "native"]
# Why a session ended: a sign-out, a new sign-in in the same browser, a timeout, a record that no longer opens, a store
# failure half-way through a rotation; the person ending it from another session (their session list, "sign out
# everywhere"); FusionAuth refusing its refresh token, or unreachable past session.refresh_grace; a FusionAuth event
# (the user deactivated, deleted, their refresh tokens revoked, a login-preventing action, a password or second factor
# changed); more than MAX_SESSIONS_PER_USER sessions at once.
SessionEndReason = Literal[
    "sign_out",
    "replaced",
    "idle_timeout",
    "absolute_timeout",
    "tampered",
    "store_failure",
    "signed_out_elsewhere",
    "refresh_refused",
    "refresh_outage",
    "user_deactivated",
    "user_deleted",
    "tokens_revoked",
    "login_prevented",
    "password_changed",
    "factors_changed",
    "too_many_sessions",
]
StoreBackend = Literal["sqlite", "redis", "postgresql"]
# The kinds of event of the security activity log (activity/log.py).
ActivityKind = Literal[
    "sign_in",
    "sign_out",
    "session_ended",
    "step_up_started",
    "step_up_code_sent",
    "step_up_verified",
    "step_up_wrong_code",
    "step_up_blocked",
    "step_up_locked",
    "privileged_action",
    "second_factor_added",
    "second_factor_removed",
]
# FusionAuth's webhook events this receiver acts on (any other type is "other"), and what became of each request:
# applied (its effect ran), duplicate (an event.id seen before), ignored (a type or a tenant we do not act on, too
# old), refused (no valid signature: 401), invalid (signed, but not an event: 400).
WebhookEvent = Literal[
    "user.deactivate",
    "user.delete",
    "user.delete.complete",
    "jwt.refresh-token.revoke",
    "user.password.update",
    "user.password.reset.success",
    "user.two-factor.method.add",
    "user.two-factor.method.remove",
    "user.action",
    "other",
    "unverified",
]
WebhookOutcome = Literal["applied", "duplicate", "ignored", "refused", "invalid"]
# Why a request of an action bound to its transaction was refused (and a fresh challenge issued): no step-up at all,
# an unbound one, a bound one that expired, was already used, was for another action, or confirmed other fields.
TransactionRefusal = Literal["no_step_up", "unbound", "expired", "used", "other_action", "mismatch"]

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Checked in MRO order of the raised error, so a subclass maps before its parent.
_STEP_UP_FAILURES: dict[type[AppError], StepUpOutcome] = {
    InvalidCode: "wrong_code",
    StepUpBlocked: "blocked",
    StepUpLocked: "locked",
    ChallengeExpired: "expired",
    TooManyStarts: "rate_limited",
    TooManySends: "rate_limited",
    ResendTooSoon: "rate_limited",
    StepUpRejected: "rejected",
    TemporarilyLocked: "rejected",  # FusionAuth's lock, as its permanent one: the account's state refused it
    NoSecondFactor: "no_second_factor",
    FusionAuthError: "fusionauth_error",
    LoginRequired: "login_required",  # not signed in, or the session ended during the step-up
}

# Seconds. The BFF's own answers take milliseconds; FusionAuth's up to its timeout (5 s by default).
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FUSIONAUTH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def step_up_failure(exc: AppError) -> StepUpOutcome:
    for cls in type(exc).__mro__:
        if cls in _STEP_UP_FAILURES:
            return _STEP_UP_FAILURES[cls]
    return "invalid"  # no challenge, a method that cannot send, a finish already running, ...


def method_label(method: str) -> str:
    # The method is the client's to choose: anything outside the standard set is one series, not a new one each.
    return method if method in _METHODS else "other"


def is_multiprocess() -> bool:
    """Whether prometheus-client writes to $PROMETHEUS_MULTIPROC_DIR. It decides once, when first imported."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class Metrics:
    """The app's metrics. One per app; the instrumented code calls the methods, never prometheus-client."""

    def __init__(self, registry: CollectorRegistry | None = None, *, exported: bool = True) -> None:
        """`exported=False`: nothing will read these metrics (`metrics.port` is not set, the default), so the
        per-request series, the only ones on the path of every request, are not recorded: a lock-taking histogram
        observation and two gauge updates per request that nobody could ever see. Everything else still counts."""
        self.per_request = exported
        if os.environ.get(MULTIPROC_ENV) and not is_multiprocess():
            # Values would stay in this process and the listener would serve zeros: refuse rather than mislead.
            raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set")
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.http_duration = Histogram(
            "stepup_bff_http_request_duration_seconds",
            "Time to answer a request, by route template, method and status; _count is the request count.",
            ["route", "method", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.http_in_progress = Gauge(
            "stepup_bff_http_requests_in_progress",
            "Requests being answered right now.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.fusionauth_duration = Histogram(
            "stepup_bff_fusionauth_request_duration_seconds",
            "Time of a call to FusionAuth, by operation and outcome; _count is the call count.",
            ["operation", "outcome"],
            buckets=FUSIONAUTH_BUCKETS,
            registry=r,
        )
        self.step_up = Counter(
            "stepup_bff_step_up",
            "Step-up API calls by step and outcome.",
            ["step", "outcome"],
            registry=r,
        )
        self.sign_ins = Counter(
            "stepup_bff_sign_ins",
            "Sign-ins by kind and outcome (success, or the error code the browser was sent home with).",
            ["kind", "outcome"],
            registry=r,
        )
        self.sign_outs = Counter(
            "stepup_bff_sign_outs", "Sign-outs that ended a session, by kind.", ["kind"], registry=r
        )
        self.sessions_ended = Counter("stepup_bff_sessions_ended", "Sessions ended, by reason.", ["reason"], registry=r)
        self.store_errors = Counter(
            "stepup_bff_store_errors",
            "Failed operations of the store (or the database), by backend and operation.",
            ["backend", "operation"],
            registry=r,
        )
        self.transaction_refusals = Counter(
            "stepup_bff_transaction_refusals",
            "Requests of a transaction-bound action refused with a fresh challenge, by action and reason.",
            ["action", "reason"],
            registry=r,
        )
        self.activity_events = Counter(
            "stepup_bff_activity_events", "Security activity events recorded, by kind.", ["kind"], registry=r
        )
        self.activity_write_failures = Counter(
            "stepup_bff_activity_write_failures",
            "Security activity events that could not be written (the database failed), by kind.",
            ["kind"],
            registry=r,
        )
        self.webhooks = Counter(
            "stepup_bff_webhooks",
            "FusionAuth webhook requests, by event type and outcome.",
            ["event", "outcome"],
            registry=r,
        )
        self.workers = Gauge(
            "stepup_bff_workers", "Worker processes serving requests.", registry=r, multiprocess_mode="livesum"
        )
        self.workers.set(1)  # one app per worker process
        self._http_children: dict[tuple[str, str, int], Histogram] = {}

    # -- recording ---------------------------------------------------------------------------------------------

    def request_started(self) -> None:
        if self.per_request:
            self.http_in_progress.inc()

    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        if not self.per_request:
            return
        self.http_in_progress.dec()
        key = (route, method_label(method), status)  # bounded before it is a key: the cache grows with the series
        child = self._http_children.get(key)
        if child is None:
            # labels() validates and locks on every call; on the hot path each series is looked up once.
            child = self._http_children[key] = self.http_duration.labels(key[0], key[1], str(status))
        child.observe(seconds)

    def observe_fusionauth(self, operation: FusionAuthOperation, outcome: FusionAuthOutcome, seconds: float) -> None:
        self.fusionauth_duration.labels(operation, outcome).observe(seconds)

    @contextmanager
    def step_up_outcome(self, step: StepUpStep, success: StepUpOutcome) -> Iterator[None]:
        """Count one step-up call: `success` if the block completes, else the outcome of the error it raises."""
        try:
            yield
        except AppError as exc:
            self.step_up.labels(step, step_up_failure(exc)).inc()
            raise
        self.step_up.labels(step, success).inc()

    @contextmanager
    def sign_in_outcome(self, kind: SignInKind) -> Iterator[None]:
        """Count one sign-in: "success", or the error code (a fixed vocabulary of our error classes)."""
        try:
            yield
        except AppError as exc:
            self.sign_in(kind, exc.error_code)
            raise
        self.sign_in(kind, "success")

    def sign_in(self, kind: SignInKind, outcome: str) -> None:
        """One sign-in attempt's outcome: "success", "second_factor_due" (native: the password was right and a code
        is asked for next), or one of our error codes (a fixed vocabulary)."""
        self.sign_ins.labels(kind, outcome).inc()

    def signed_out(self, kind: SignInKind) -> None:
        self.sign_outs.labels(kind).inc()

    def session_ended(self, reason: SessionEndReason) -> None:
        self.sessions_ended.labels(reason).inc()

    def webhook(self, event: str, outcome: WebhookOutcome) -> None:
        """`event` is FusionAuth's (signed) type: one of ours keeps its name, any other is "other"."""
        known = event if event in get_args(WebhookEvent) else "other"
        self.webhooks.labels(known, outcome).inc()

    def transaction_refused(self, action: str, reason: TransactionRefusal) -> None:
        """`action` is a name from the configuration (step_up.actions), never from a client."""
        self.transaction_refusals.labels(action, reason).inc()

    def activity_recorded(self, kind: ActivityKind) -> None:
        self.activity_events.labels(kind).inc()

    def activity_write_failed(self, kind: ActivityKind) -> None:
        self.activity_write_failures.labels(kind).inc()

    def store_error(self, backend: StoreBackend, operation: str) -> None:
        """Call where a store translates its library's error (the operation is a method name of the store)."""
        self.store_errors.labels(backend, operation).inc()


# -- the label vocabularies, for the dashboard test and the README --------------------------------------------

LABEL_VALUES: dict[str, tuple[str, ...]] = {
    "fusionauth_operation": get_args(FusionAuthOperation),
    "fusionauth_outcome": get_args(FusionAuthOutcome),
    "step_up_step": get_args(StepUpStep),
    "step_up_outcome": get_args(StepUpOutcome),
    "sign_in_kind": get_args(SignInKind),
    "session_end_reason": get_args(SessionEndReason),
    "store_backend": get_args(StoreBackend),
    "activity_kind": get_args(ActivityKind),
    "transaction_refusal": get_args(TransactionRefusal),
    "webhook_event": get_args(WebhookEvent),
    "webhook_outcome": get_args(WebhookOutcome),
}


def metric_names(metrics: Metrics) -> set[str]:
    """Every series name the registry can expose (with the _bucket/_count/_sum/_total suffixes)."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


# -- exposition (the separate listener) ---------------------------------------------------------------------------


def multiprocess_registry() -> CollectorRegistry:
    """A registry that reads every worker's files at scrape time."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    return registry


class MetricsListenerError(OSError):
    pass


def start_listener(host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """prometheus-client's own exposition server, in a daemon thread of this process (never a worker's socket)."""
    try:
        return start_http_server(port, addr=host, registry=multiprocess_registry())
    except OSError as exc:
        raise MetricsListenerError(f"cannot listen for metrics on {host}:{port}: {exc.strerror}") from exc


class MetricsSupervisor(Multiprocess):
    """uvicorn's worker supervisor, telling prometheus-client about every worker that is gone (crashed and replaced,
    or retired by a SIGHUP restart) so that its live gauges (workers, requests in progress) stop counting."""

    def _forget_gone(self, before: set[int | None]) -> None:
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                mark_process_dead(pid)  # type: ignore[no-untyped-call]

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self._forget_gone(before)

    def restart_all(self) -> None:
        before = {process.pid for process in self.processes}
        super().restart_all()
        self._forget_gone(before)
