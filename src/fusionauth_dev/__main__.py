"""``python -m fusionauth_dev [KICKSTART ...]``: run the dev server on 127.0.0.1:9011.

``python -m fusionauth_dev apply --url URL FILE...``: send kickstart-format files to a running FusionAuth
(``fusionauth_dev.remote_kickstart``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from fusionauth_dev import remote_kickstart
from fusionauth_dev.app import create_dev_server
from fusionauth_dev.kickstart import KickstartError, fill_missing
from fusionauth_dev.serve import run

logger = logging.getLogger("fusionauth_dev")
_DEFAULT_FILES = ("kickstart/kickstart.json", "kickstart/email-mfa.json")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Checked by hand, not an argparse sub-command: the server's positional arguments are kickstart paths.
    if arguments[:1] == ["apply"]:
        return remote_kickstart.main(arguments[1:])
    parser = argparse.ArgumentParser(
        prog="python -m fusionauth_dev",
        description="FusionAuth-compatible dev server.",
        epilog=f"{remote_kickstart.PROG} --help: send kickstart-format files to a running FusionAuth instead.",
    )
    parser.add_argument("kickstart", nargs="*", help=f"kickstart files in order (default: {' '.join(_DEFAULT_FILES)})")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9011)
    parser.add_argument("--public-url", help="base URL discovery advertises (default: the request's)")
    parser.add_argument("--no-dev-console", action="store_true", help="do not serve /_dev")
    parser.add_argument("--require-env", action="store_true", help="fail on a missing secret instead of generating one")
    args = parser.parse_args(arguments)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    files = args.kickstart or [path for path in _DEFAULT_FILES if Path(path).is_file()]
    env: dict[str, str] = dict(os.environ)
    if not args.require_env:
        env, generated = fill_missing(env)
        for name in generated:
            logger.info("%s is not set: using a random value for this run (see the summary below)", name)
    try:
        server = create_dev_server(files, env=env, public_url=args.public_url, dev_console=not args.no_dev_console)
    except KickstartError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    run(server, host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
