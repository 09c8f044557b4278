"""What metrics and the access log cost on the hot path, measured two ways in one run.

    .venv/bin/python bench/overhead.py [--rounds 3] [--duration 4] [--connections 32] [--requests 20000]

1. wrk (`-t1 -c<connections> -d<duration>s`, needs `wrk`) against `stepup-bff serve`, one worker, with metrics
   on/off and the access log on/off, next to a bare FastAPI app: GET /healthz and GET /api/session. The dev
   FusionAuth runs in this process (only for signing in once); every BFF variant shares one store and one session
   key, so the one session cookie is valid on all of them and GET /api/session does its real work (cookie check,
   store read). "metrics off" still records into memory; "on" is multiprocess mode plus the listener.
2. CPU time per request of the request-context middleware alone (request id, timing, metrics, access line) around
   an ASGI app that only answers, driven in-process without sockets, against that app without the middleware.
   Each variant runs in a fresh process (multiprocess mode is chosen when prometheus-client is imported); the
   access line goes to a file.

Variants are measured in alternation, round after round, so that load from anything else on the machine spreads
over all of them; compare the ratios and the differences, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stepup_bff.ops.dev import authorize_bff_request, build_stack, default_kickstart  # noqa: E402
from support.dev_stack import KICKSTART_ENV, sign_in_through_form  # noqa: E402
from support.live_server import free_port, serve  # noqa: E402

BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI
from stepup_bff.ops.listen import bind_tcp

app = FastAPI()

@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}

@app.get("/api/session")
async def session() -> dict[str, bool]:
    return {"authenticated": False}

config = uvicorn.Config(app, log_config=None, access_log=False, proxy_headers=False, server_header=False, ws="none")
uvicorn.Server(config).run(sockets=[bind_tcp("127.0.0.1", int(sys.argv[1]))])
"""

# One variant of part 2, in a process of its own: argv[1] is the variant, argv[2] the request count.
MICRO = """
import asyncio, logging.config, os, sys, tempfile, time
variant, count = sys.argv[1], int(sys.argv[2])
if "multiprocess" in variant:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from stepup_bff.ops.logs import configure_logging
from stepup_bff.ops.metrics import Metrics
from stepup_bff.ops.request_context import RequestContextMiddleware

async def answer(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})

sys.stdout = open(os.path.join(tempfile.mkdtemp(), "access.log"), "w")
logging.config.dictConfig(configure_logging("info", "json" if "json" in variant else "text"))
app = answer if variant == "bare" else RequestContextMiddleware(
    answer, forwarded_allow_ips="127.0.0.1", metrics=Metrics(), access_log="log" in variant
)
scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
         "path": "/healthz", "raw_path": b"/healthz", "query_string": b"", "root_path": "",
         "headers": [(b"host", b"localhost:9000"), (b"accept", b"*/*")],
         "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 9000)}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    pass

async def run(n):
    for _ in range(n):
        await app(dict(scope), receive, send)

asyncio.run(run(2000))
started = time.process_time()
asyncio.run(run(count))
sys.__stdout__.write(str((time.process_time() - started) / count * 1e6))
"""
MICRO_VARIANTS = (
    "bare",
    "middleware",
    "middleware+log",
    "middleware+log+json",
    "middleware+multiprocess",
    "middleware+multiprocess+log",
)

VARIANTS = {
    "bare FastAPI": None,
    "bff, metrics off, access log off": {"STEPUP_ACCESS_LOG": "false"},
    "bff, metrics off, access log on": {"STEPUP_ACCESS_LOG": "true"},
    "bff, metrics on, access log off": {"STEPUP_ACCESS_LOG": "false", "STEPUP_METRICS__PORT": "{metrics_port}"},
    "bff, metrics on, access log on": {"STEPUP_ACCESS_LOG": "true", "STEPUP_METRICS__PORT": "{metrics_port}"},
}
BASELINE = "bff, metrics off, access log off"


def wait_up(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def wrk(url: str, duration: int, connections: int, cookie: str | None) -> float:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url]
    if cookie:
        command[1:1] = ["-H", f"Cookie: {cookie}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout  # noqa: S603
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if found is None or errors is not None:
        raise SystemExit(f"wrk against {url} failed:\n{output}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20000, help="requests per variant and round in part 2")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")

    data = Path(tempfile.mkdtemp(prefix="stepup-bench-"))
    fusionauth_port, first_port = free_port(), free_port()
    stack = build_stack(
        bff_port=first_port,
        fusionauth_port=fusionauth_port,
        kickstart=default_kickstart(),
        storage_url=f"sqlite:///{data / 'bench.sqlite3'}",
        env=KICKSTART_ENV,
    )
    settings = stack.settings
    common = {
        **{name: value for name, value in os.environ.items() if not name.startswith("STEPUP_")},
        "STEPUP_FUSIONAUTH__URL": settings.fusionauth.url,
        "STEPUP_FUSIONAUTH__PUBLIC_URL": settings.fusionauth.browser_url,
        "STEPUP_FUSIONAUTH__API_KEY": settings.fusionauth.api_key.get_secret_value(),
        "STEPUP_FUSIONAUTH__APPLICATION_ID": str(settings.fusionauth.application_id),
        "STEPUP_FUSIONAUTH__CLIENT_SECRET": settings.fusionauth.client_secret.get_secret_value(),
        "STEPUP_SESSION__SECRET_KEYS": json.dumps([settings.session.secret_keys[0].get_secret_value()]),
        "STEPUP_STORAGE__URL": settings.storage.url,
    }
    processes: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
    try:
        with serve(stack.fusionauth.app, port=fusionauth_port):
            httpx.Client(timeout=5).send(authorize_bff_request(stack)).raise_for_status()
            for index, (name, extra) in enumerate(VARIANTS.items()):
                port = first_port if index == 1 else free_port()
                log = (data / f"variant-{index}.log").open("wb")
                if extra is None:
                    command = [sys.executable, "-c", BARE_APP, str(port)]
                    env = common
                else:
                    command = [sys.executable, "-m", "stepup_bff", "serve", "--port", str(port), "--workers", "1"]
                    settings_env = {key: value.format(metrics_port=free_port()) for key, value in extra.items()}
                    env = {**common, "STEPUP_PUBLIC_URL": f"http://localhost:{port}", **settings_env}
                process = subprocess.Popen(command, env=env, cwd=data, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
                processes[name] = (process, f"http://127.0.0.1:{port}")
            for _, url in processes.values():
                wait_up(f"{url}/healthz", time.monotonic() + 60)
            # One sign-in, through the first BFF variant (the one the dev FusionAuth was told about).
            browser = sign_in_through_form(stack.bff_url, stack.fusionauth_url, "alice@example.com", "stepup-demo")
            cookie = f"stepup_session={browser.cookies['stepup_session']}"
            browser.close()

            results: dict[str, dict[str, list[float]]] = {
                name: {"/healthz": [], "/api/session": []} for name in VARIANTS
            }
            for round_number in range(args.rounds):
                for path in ("/healthz", "/api/session"):
                    for name, (_, url) in processes.items():
                        sent = cookie if path == "/api/session" and VARIANTS[name] is not None else None
                        results[name][path].append(wrk(f"{url}{path}", args.duration, args.connections, sent))
                sys.stderr.write(f"round {round_number + 1}/{args.rounds} done\n")
    finally:
        for process, _ in processes.values():
            process.send_signal(signal.SIGINT)
        for process, _ in processes.values():
            process.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)

    micro: dict[str, list[float]] = {variant: [] for variant in MICRO_VARIANTS}
    for _ in range(args.rounds):
        for variant in MICRO_VARIANTS:
            command = [sys.executable, "-c", MICRO, variant, str(args.requests)]
            output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT).stdout  # noqa: S603
            micro[variant].append(float(output))

    report: dict[str, object] = {}
    for name, by_path in results.items():
        report[name] = {
            path: {
                "req_per_s_median": round(statistics.median(samples), 1),
                "req_per_s_rounds": [round(sample, 1) for sample in samples],
                "vs_bff_metrics_off_access_log_off": round(
                    statistics.median(samples) / statistics.median(results[BASELINE][path]), 3
                ),
            }
            for path, samples in by_path.items()
        }
    bare = statistics.median(micro["bare"])
    report["cpu_us_per_request_in_process"] = {
        variant: {
            "median": round(statistics.median(samples), 2),
            "rounds": [round(sample, 2) for sample in samples],
            "added_by_the_middleware": round(statistics.median(samples) - bare, 2),
        }
        for variant, samples in micro.items()
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
