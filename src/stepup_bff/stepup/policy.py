"""What a privileged action demands of a step-up: [step_up] and its [step_up.actions.<name>] tables, resolved.

A route names its action in its guard (`require_step_up(action="send_telegram")`, deps.py); an action that the
settings do not declare, and a route that names none, get [step_up]'s own values: today's behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..settings import ConfigError, StepUpSettings


@dataclass(frozen=True)
class Policy:
    action: str | None  # the route's name for it, None for a route that gives none
    max_age: int  # seconds a second factor counts for it (RFC 9470 max_age)
    single_use: bool  # one request per step-up
    bound: bool  # the step-up confirms one transaction and authorizes exactly it
    methods: frozenset[str] | None  # the methods its step-up may use (None: any of the user's)


def resolve(settings: StepUpSettings, action: str | None, max_age: int | None = None) -> Policy:
    """The policy of `action`. `max_age` (a route's own `require_step_up(max_age=...)`) overrides the settings'."""
    declared = settings.actions.get(action) if action is not None else None
    bound = declared.bind_transaction if declared is not None else False
    single_use = declared.single_use if declared is not None and declared.single_use is not None else None
    methods = frozenset(declared.methods) if declared is not None and declared.methods else None
    return Policy(
        action=action,
        max_age=max_age or (declared.max_age if declared and declared.max_age else None) or settings.max_age,
        # A bound grant is for one request by definition (settings refuse bind_transaction with single_use = false).
        single_use=True if bound else (settings.single_use if single_use is None else single_use),
        bound=bound,
        methods=methods,
    )


def check_routes(settings: StepUpSettings, guarded: Iterable[tuple[str | None, bool]]) -> None:
    """Refuse a configuration that the routes cannot honour: an action declared in [step_up.actions] that no route
    names (a misspelt table would otherwise leave the real action on the defaults, unbound), and a bound action
    whose route cannot describe its transaction. `guarded` is each guard's (action, describes a transaction)."""
    routes = {action: describes for action, describes in guarded if action is not None}
    for name, policy in settings.actions.items():
        if name not in routes:
            known = ", ".join(sorted(routes)) or "none"
            raise ConfigError(
                f"invalid configuration:\n  step_up.actions.{name}: no route is guarded by this action "
                f"(the actions are: {known})"
            )
        if policy.bind_transaction and not routes[name]:
            raise ConfigError(
                f"invalid configuration:\n  step_up.actions.{name}.bind_transaction: this action's route does not "
                "describe its transaction, so its step-up cannot be bound to one"
            )
