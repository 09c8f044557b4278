"""The long-lived objects one app instance shares, built by the lifespan and handed to requests through deps."""

from __future__ import annotations

from dataclasses import dataclass

from .activity import ActivityLog
from .auth.lifecycle import SessionLifecycle
from .auth.login_flow import LoginFlow
from .auth.native_login import NativeSignIn
from .auth.sessions import SessionManager
from .auth.tokens import TokenVerifier
from .clock import Clock
from .fusionauth.client import FusionAuthClient
from .fusionauth.webhooks import WebhookVerifier
from .ops.metrics import Metrics
from .ops.readiness import Readiness
from .settings import Settings
from .stepup.factors import FactorService
from .stepup.service import StepUpService
from .storage import Store, TelegramStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    clock: Clock
    store: Store
    telegrams: TelegramStore
    fusionauth: FusionAuthClient
    tokens: TokenVerifier
    sessions: SessionManager
    login: LoginFlow
    step_up: StepUpService
    factors: FactorService
    native: NativeSignIn
    metrics: Metrics
    readiness: Readiness
    activity: ActivityLog
    webhooks: WebhookVerifier
    lifecycle: SessionLifecycle
