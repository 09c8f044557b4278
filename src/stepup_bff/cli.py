"""The `stepup-bff` command: `serve` runs the BFF; `dev` runs it with an embedded FusionAuth look-alike;
`doctor` checks a configuration against a running FusionAuth."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from .settings import ConfigError, load_settings


def _serve(args: argparse.Namespace) -> int:
    from uvicorn.supervisors import Multiprocess

    from .app import create_app
    from .clock import SystemClock
    from .ops.listen import PortInUse, bind_tcp
    from .ops.logs import configure_logging
    from .storage import check_backends

    settings = load_settings(args.config)
    # Before binding or forking: an unusable storage.url or database.url stops here with one message (exit 2).
    asyncio.run(check_backends(settings, SystemClock()))
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    workers = args.workers or settings.server.workers
    options: dict[str, Any] = {
        "log_config": configure_logging(settings.log_level),
        # Behind a load balancer the client address and scheme come from X-Forwarded-*, believed only from the
        # addresses listed here.
        "proxy_headers": True,
        "forwarded_allow_ips": settings.server.forwarded_allow_ips,
        "server_header": False,
        "ws": "none",
    }
    try:
        sock = bind_tcp(host, port)
    except PortInUse as exc:
        sys.stderr.write(f"stepup-bff serve: {exc}\n")
        return 1
    if workers == 1:
        config = uvicorn.Config(create_app(settings), **options)
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    # Each worker process builds its own app (and store connection, HTTP client) from the same configuration.
    if args.config is not None:
        os.environ["STEPUP_CONFIG"] = str(args.config.resolve())
    config = uvicorn.Config("stepup_bff.app:create_app", factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[sock]).run()
    return 0


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
