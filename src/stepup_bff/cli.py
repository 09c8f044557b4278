"""The `stepup-bff` command: `serve` runs the BFF; `dev` runs it with an embedded FusionAuth look-alike;
`doctor` checks a configuration against a running FusionAuth; `audit verify` checks the security activity log."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn

from .settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .ops.logs import LogFormat

T = TypeVar("T")

# prometheus-client's multiprocess mode (ops/metrics.py); read by prometheus-client itself.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _metrics_directory(enabled: bool) -> Path | None:
    """Where the workers' metric files go: a new, empty, private directory per run. prometheus-client chooses
    between memory and files when it is first imported, so this runs before anything imports the app."""
    os.environ.pop(MULTIPROC_ENV, None)  # an inherited directory could hold another run's numbers
    if not enabled:
        return None
    directory = Path(tempfile.mkdtemp(prefix="stepup-bff-metrics-"))  # mode 0700
    os.environ[MULTIPROC_ENV] = str(directory)
    return directory


def server_options(log_level: str = "info", log_format: LogFormat = "text") -> dict[str, Any]:
    """uvicorn's options for `serve`; bench/run.py runs its bare FastAPI app with the same ones. The event loop and
    the HTTP parser stay uvicorn's "auto": uvloop and httptools, which the `uvicorn[standard]` dependency installs
    (where they exist: uvloop has no Windows build), else asyncio's loop and h11."""
    from .ops.logs import configure_logging

    return {
        "log_config": configure_logging(log_level, log_format),
        # The app applies X-Forwarded-* from server.forwarded_allow_ips itself (ops/request_context.py): it must see
        # the direct peer to decide whether to believe X-Request-ID too, and uvicorn's rewrite would hide it.
        "proxy_headers": False,
        # The app writes its own access line (with the duration and request id); uvicorn's would be a second one.
        "access_log": False,
        "server_header": False,
        "ws": "none",
    }


def _frozen(app: T) -> T:
    """Everything built so far (modules, routes, the app) is moved out of the garbage collector's sight: it lives as
    long as the process, and otherwise every full collection would walk all of it again, a pause of many
    milliseconds for whichever requests are in flight (CPython's gc.freeze, meant for this)."""
    gc.collect()
    gc.freeze()
    return app


def worker_app() -> FastAPI:
    """The app of one `serve --workers N` worker process (uvicorn's factory)."""
    from .app import create_app

    return _frozen(create_app())


def _serve(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    metrics_dir = _metrics_directory(settings.metrics.port is not None)
    try:
        return _run_server(args, settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_server(args: argparse.Namespace, settings: Settings) -> int:
    from uvicorn.supervisors import Multiprocess

    from .app import check_step_up_actions, create_app
    from .clock import SystemClock
    from .ops.listen import PortInUse, bind_tcp
    from .ops.metrics import MetricsListenerError, MetricsSupervisor, start_listener
    from .storage import check_backends

    # Before binding or forking: an unusable storage.url or database.url stops here with one message (exit 2), and
    # so does a [step_up.actions] table that no route can honour.
    asyncio.run(check_backends(settings, SystemClock()))
    check_step_up_actions(settings)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    options = server_options(settings.log_level, settings.log_format)
    try:
        sock = bind_tcp(host, port)
    except PortInUse as exc:
        sys.stderr.write(f"stepup-bff serve: {exc}\n")
        return 1
    listener = None
    if settings.metrics.port is not None:
        try:
            listener, _ = start_listener(settings.metrics.host, settings.metrics.port)
        except MetricsListenerError as exc:
            sock.close()
            sys.stderr.write(f"stepup-bff serve: {exc}\n")
            return 1
    try:
        if workers == 1:
            config = uvicorn.Config(_frozen(create_app(settings)), **options)
            uvicorn.Server(config).run(sockets=[sock])
            return 0
        # Each worker process builds its own app (and store connection, HTTP client) from the same configuration.
        if args.config is not None:
            os.environ["STEPUP_CONFIG"] = str(args.config.resolve())
        config = uvicorn.Config("stepup_bff.cli:worker_app", factory=True, workers=workers, **options)
        supervisor = MetricsSupervisor if listener is not None else Multiprocess
        supervisor(config, sockets=[sock]).run()
        return 0
    finally:
        if listener is not None:
            listener.shutdown()
            listener.server_close()


def _audit_verify(args: argparse.Namespace) -> int:
    from .activity.verify import print_report, verify_database

    settings = load_settings(args.config)
    return print_report(asyncio.run(verify_database(settings)), sys.stdout, heads=args.heads)


def _doctor(args: argparse.Namespace) -> int:
    from .ops.doctor import run_doctor

    settings = load_settings(args.config)
    return asyncio.run(run_doctor(settings, out=sys.stdout, err=sys.stderr, wait=args.wait))


def _dev(args: argparse.Namespace) -> int:
    # Imported here so that `serve` never loads the dev server.
    from .ops.dev import DevError, run

    try:
        return run(
            bff_port=args.port,
            fusionauth_port=args.fusionauth_port,
            kickstart=args.kickstart,
            data_dir=args.data_dir,
        )
    except DevError as exc:
        sys.stderr.write(f"stepup-bff dev: {exc}\n")
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepup-bff", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the BFF")
    serve.add_argument("--config", type=Path, help="TOML config file (default: $STEPUP_CONFIG or ./config.toml)")
    serve.add_argument("--host", help="bind address (default: server.host)")
    serve.add_argument("--port", type=int, help="port (default: server.port)")
    serve.add_argument("--workers", type=int, help="worker processes (default: server.workers)")
    serve.set_defaults(run=_serve)

    dev = commands.add_parser(
        "dev", help="run the BFF with an embedded FusionAuth look-alike seeded from kickstart/ (development only)"
    )
    dev.add_argument("--port", type=int, default=9000, help="the BFF's port (default 9000)")
    dev.add_argument("--fusionauth-port", type=int, default=9011, help="the dev FusionAuth's port (default 9011)")
    dev.add_argument(
        "--kickstart", type=Path, action="append", help="kickstart file(s) (default: kickstart/*.json of this clone)"
    )
    dev.add_argument("--data-dir", type=Path, default=Path("data"), help="where the dev store lives (default ./data)")
    dev.set_defaults(run=_dev)

    doctor = commands.add_parser("doctor", help="check the configuration against a running FusionAuth")
    doctor.add_argument("--config", type=Path, help="TOML config file (default: $STEPUP_CONFIG or ./config.toml)")
    doctor.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="repeat the checks until all pass or SECONDS have passed (e.g. while FusionAuth runs its kickstart)",
    )
    doctor.set_defaults(run=_doctor)
    audit = commands.add_parser("audit", help="the security activity log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify", help="check every user's hash chain; exit 1 if an event was deleted, edited or moved"
    )
    verify.add_argument("--config", type=Path, help="TOML config file (default: $STEPUP_CONFIG or ./config.toml)")
    verify.add_argument("--heads", action="store_true", help="also print each chain's newest event, to keep elsewhere")
    verify.set_defaults(run=_audit_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except ConfigError as exc:
        # One clear message naming the key, no traceback.
        sys.stderr.write(f"stepup-bff: {exc}\n")
        return 2
    return code
