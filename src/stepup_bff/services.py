"""The long-lived objects one app instance shares, built by the lifespan and handed to requests through deps."""

from __future__ import annotations

from dataclasses import dataclass

from .clock import Clock
from .fusionauth import FusionAuthClient
from .login_flow import LoginFlow
from .sessions import SessionManager
from .settings import Settings
from .step_up import StepUpService
from .store import Store, TelegramStore
from .tokens import TokenVerifier


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
