"""GET /api/session, signed in, with the store on Redis, against a bare FastAPI route: both measured in one run.

    .venv/bin/python bench/redis_session.py [--duration 4] [--connections 32]

Starts a throwaway redis-server (tests/support/backends.py), the dev FusionAuth in this process, one
`stepup-bff serve` worker on Redis (as production runs it) and, beside it, a bare FastAPI app under uvicorn with the
same server options (`bench/redis_session.py --bare PORT`). Signs alice in through the dev FusionAuth's form, then
runs `wrk -t1 -cN -dDs` against, in turn:

    bare FastAPI           a route returning a constant: the floor for this uvicorn set-up
    BFF /healthz           our middleware (security headers, pending cookies), access log; no store
    BFF /api/session anon  plus the dependency chain and the response model; no cookie, so no store
    BFF /api/session       plus the cookie's signature, one Redis GET and opening the sealed record

and prints requests/s for each and the ratio of the last to the first. The differences say where the time goes.
Numbers from a shared 2-core machine are indicative: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stepup_bff.ops.dev import authorize_bff_request, build_stack, default_kickstart  # noqa: E402
from support.backends import redis_server  # noqa: E402
from support.dev_stack import KICKSTART_ENV, bff_processes, sign_in_through_form  # noqa: E402
from support.live_server import free_port, serve  # noqa: E402


def bare(port: int) -> None:
    """A bare FastAPI route under uvicorn, with the options `stepup-bff serve` uses (its socket, its log set-up)."""
    import uvicorn
    from fastapi import FastAPI

    from stepup_bff.ops.listen import bind_tcp
    from stepup_bff.ops.logs import configure_logging

    app = FastAPI()

    @app.get("/bare")
    async def constant() -> dict[str, bool]:
        return {"authenticated": False}

    config = uvicorn.Config(
        app, log_config=configure_logging("info"), proxy_headers=True, server_header=False, ws="none"
    )
    uvicorn.Server(config).run(sockets=[bind_tcp("127.0.0.1", port)])


def wrk(url: str, duration: int, connections: int, cookie: str | None = None) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    if cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 30).stdout  # noqa: S603
    if "Non-2xx" in output:
        raise SystemExit(f"{url} answered errors under load:\n{output}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not found:
        raise SystemExit(f"no result from wrk:\n{output}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare:
        bare(args.bare)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as scratch, redis_server() as redis:
        public_port, fusionauth_port, bare_port = free_port(), free_port(), free_port()
        stack = build_stack(
            bff_port=public_port,
            fusionauth_port=fusionauth_port,
            kickstart=default_kickstart(),
            storage_url=redis.url,
            database_url=f"sqlite:///{scratch}/records.sqlite3",
            env=KICKSTART_ENV,
        )
        bare_server = subprocess.Popen(  # noqa: S603 - this script
            [sys.executable, __file__, "--bare", str(bare_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            with serve(stack.fusionauth.app, port=fusionauth_port):
                with httpx.Client(timeout=5) as http:
                    http.send(authorize_bff_request(stack)).raise_for_status()
                with bff_processes(stack.settings, [public_port], Path(scratch)) as (bff,):
                    password = stack.seed.user("alice@example.com").password
                    if not password:
                        raise SystemExit("kickstart has no password for alice")
                    browser = sign_in_through_form(bff.url, stack.fusionauth_url, "alice@example.com", password)
                    cookie = f"stepup_session={browser.cookies['stepup_session']}"
                    if browser.get(f"{bff.url}/api/session").json().get("authenticated") is not True:
                        raise SystemExit("signing alice in did not work")
                    browser.close()
                    httpx.get(f"http://127.0.0.1:{bare_port}/bare", timeout=10).raise_for_status()
                    d, c = args.duration, args.connections
                    bare_rps = wrk(f"http://127.0.0.1:{bare_port}/bare", d, c)
                    results = {
                        "bare FastAPI route": bare_rps,
                        "BFF GET /healthz": wrk(f"http://127.0.0.1:{public_port}/healthz", d, c),
                        "BFF GET /api/session anonymous": wrk(f"http://127.0.0.1:{public_port}/api/session", d, c),
                        "BFF GET /api/session signed in (Redis)": wrk(
                            f"http://127.0.0.1:{public_port}/api/session", d, c, cookie
                        ),
                    }
        finally:
            bare_server.terminate()
            bare_server.wait(timeout=10)
    signed_in = results["BFF GET /api/session signed in (Redis)"]
    report = {
        "wrk": f"-t1 -c{args.connections} -d{args.duration}s",
        "requests_per_second": results,
        "ratio_signed_in_session_to_bare": round(signed_in / bare_rps, 3),
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
