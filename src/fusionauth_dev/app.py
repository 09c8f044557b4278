"""Building the dev server: kickstart files in, an ASGI app and a ``Seed`` summary out."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from fastapi import FastAPI

from fusionauth_dev import api, console, management, oauth
from fusionauth_dev.clock import Clock, SystemClock
from fusionauth_dev.directory import Directory
from fusionauth_dev.errors import install_error_handlers
from fusionauth_dev.kickstart import apply_kickstart, empty_plan, load_kickstart
from fusionauth_dev.outbox import Outbox
from fusionauth_dev.seed import Seed, build_seed
from fusionauth_dev.settings import DevSettings


class DevServer:
    """A seeded dev server: ``app`` to serve, ``seed()`` to configure a relying party, ``directory`` for tests."""

    def __init__(
        self,
        *,
        app: FastAPI,
        directory: Directory,
        settings: DevSettings,
        passwords: Mapping[str, str],
        skipped: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.directory = directory
        self.settings = settings
        self._passwords = dict(passwords)
        self._skipped = tuple(skipped)

    @property
    def clock(self) -> Clock:
        return self.directory.clock

    @property
    def outbox(self) -> Outbox:
        return self.directory.outbox

    def seed(self) -> Seed:
        return build_seed(self.directory, self._passwords, self._skipped)


def create_dev_server(
    kickstart: Sequence[str | os.PathLike[str]] = (),
    *,
    env: Mapping[str, str] | None = None,
    public_url: str | None = None,
    clock: Clock | None = None,
    dev_console: bool = True,
) -> DevServer:
    """Load ``kickstart`` files in order (a kickstart, then overlays) and build the app.

    ``env`` feeds ``#{ENV.NAME}`` (default ``os.environ``). ``public_url`` is the base URL discovery advertises
    (default: each request's own). Raises ``KickstartError`` for a file that cannot be loaded or applied.
    """
    plan = load_kickstart(kickstart, env=env) if kickstart else empty_plan()
    directory = Directory(
        clock or SystemClock(),
        default_tenant_id=plan.default_tenant_id,
        default_signing_key_id=plan.default_signing_key_id,
    )
    applied = apply_kickstart(plan, directory)
    settings = DevSettings(public_url=public_url, dev_console=dev_console)
    app = FastAPI(title="fusionauth_dev (not FusionAuth)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.directory = directory
    app.state.settings = settings
    install_error_handlers(app)
    management.install_routes(app)
    app.include_router(api.router)
    app.include_router(oauth.router)
    if dev_console:
        app.include_router(console.router)
    server = DevServer(
        app=app, directory=directory, settings=settings, passwords=applied.passwords, skipped=applied.skipped
    )
    app.state.dev_server = server
    return server


def create_dev_app(
    kickstart: Sequence[str | os.PathLike[str]] = (),
    *,
    env: Mapping[str, str] | None = None,
    public_url: str | None = None,
    clock: Clock | None = None,
    dev_console: bool = True,
) -> FastAPI:
    """``create_dev_server(...).app``; the ``DevServer`` stays reachable as ``app.state.dev_server``."""
    return create_dev_server(kickstart, env=env, public_url=public_url, clock=clock, dev_console=dev_console).app
