"""Latency, throughput and memory of the BFF as `stepup-bff dev` runs it, measured from a separate process.

    .venv/bin/python bench/latency.py [--requests 2000] [--concurrency 20]

It starts `stepup-bff dev` on free ports, signs alice in through the dev FusionAuth's form, steps up with her
TOTP code, then times the BFF's own endpoints (none of them calls FusionAuth once signed in): p50/p95/p99 of
sequential requests, requests per second with `--concurrency` clients, and the server's resident memory. It also
times native sign-in: a whole password sign-in (the dev FusionAuth's PBKDF2 included), and a guess refused by the
per-login-id limit, which never reaches FusionAuth.
Numbers from a noisy 2-core machine are indicative; compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyotp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fusionauth_dev import create_dev_server, fill_missing  # noqa: E402
from support.dev_stack import sign_in_through_form  # noqa: E402
from support.live_server import free_port  # noqa: E402

CSRF = {"X-CSRF": "1"}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_healthy(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("stepup-bff dev did not start")


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "mean_ms": statistics.fmean(ordered) * 1000}


def sequential(
    client: httpx.Client, method: str, url: str, n: int, expect: int | None = None, **kwargs: object
) -> dict[str, float]:
    samples = []
    for i in range(n):
        started = time.perf_counter()
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        samples.append(time.perf_counter() - started)
        if response.status_code != expect if expect is not None else response.status_code >= 400:
            raise SystemExit(f"{method} {url} answered {response.status_code} on request {i}: {response.text}")
    return percentiles(samples)


def confirmed_telegrams(client: httpx.Client, bff: str, totp: pyotp.TOTP, n: int) -> dict[str, dict[str, float]]:
    """send_telegram is bound to its transaction: each telegram is refused with its challenge, confirmed (start with
    the transaction id, finish with a code) and sent again. Timed apart: the refusal, the step-up, the confirmed
    send."""
    refused, confirming, sent = [], [], []
    for i in range(n):
        body = {"recipient": "Bench", "message": f"la la la {i}"}
        started = time.perf_counter()
        challenge = client.post(f"{bff}/api/telegrams", json=body, headers=CSRF)
        refused.append(time.perf_counter() - started)
        if challenge.status_code != 401:
            raise SystemExit(f"POST /api/telegrams answered {challenge.status_code}: {challenge.text}")
        started = time.perf_counter()
        transaction = {"transaction_id": challenge.json()["transaction"]["id"]}
        client.post(f"{bff}/api/step-up/start", json=transaction, headers=CSRF).raise_for_status()
        client.post(f"{bff}/api/step-up/finish", json={"code": totp.now()}, headers=CSRF).raise_for_status()
        confirming.append(time.perf_counter() - started)
        started = time.perf_counter()
        created = client.post(f"{bff}/api/telegrams", json=body, headers=CSRF)
        sent.append(time.perf_counter() - started)
        if created.status_code != 201:
            raise SystemExit(f"the confirmed POST /api/telegrams answered {created.status_code}: {created.text}")
    return {
        "POST /api/telegrams (refused: the challenge, a pending transaction)": percentiles(refused),
        "POST /api/step-up/start + finish (bound, dev FusionAuth)": percentiles(confirming),
        "POST /api/telegrams (confirmed: the grant taken, the telegram and its event committed)": percentiles(sent),
    }


async def concurrent(cookies: httpx.Cookies, url: str, n: int, concurrency: int) -> float:
    async with httpx.AsyncClient(cookies=cookies, timeout=10) as client:
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                response = await client.get(url)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()

    bff_port, fusionauth_port = free_port(), free_port()
    bff, fusionauth = f"http://localhost:{bff_port}", f"http://localhost:{fusionauth_port}"
    kickstart = [ROOT / "kickstart" / "kickstart.json", ROOT / "kickstart" / "email-mfa.json"]
    demo = create_dev_server(kickstart, env=fill_missing(os.environ)[0]).seed().user("alice@example.com")
    if not (demo.password and demo.totp_secret):
        raise SystemExit("kickstart has no password or TOTP secret for alice")
    with tempfile.TemporaryDirectory() as data:
        server = subprocess.Popen(  # noqa: S603 - our own command
            [
                sys.executable,
                "-m",
                "stepup_bff",
                "dev",
                "--port",
                str(bff_port),
                "--fusionauth-port",
                str(fusionauth_port),
                "--data-dir",
                data,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(bff, time.monotonic() + 30)
            idle_rss = rss_mib(server.pid)
            browser = sign_in_through_form(bff, fusionauth, demo.login_id, demo.password)
            totp = pyotp.TOTP(base64.b32encode(base64.b64decode(demo.totp_secret)).decode())
            n = args.requests
            results = {
                "GET /healthz": sequential(browser, "GET", f"{bff}/healthz", n),
                "GET /api/session": sequential(browser, "GET", f"{bff}/api/session", n),
                "GET /api/telegrams": sequential(browser, "GET", f"{bff}/api/telegrams", n),
                "GET /api/activity": sequential(browser, "GET", f"{bff}/api/activity", n),
                # The step-up's own limits (max_starts per failure window) cap how many a bench may confirm.
                **confirmed_telegrams(browser, bff, totp, min(n, 9)),
            }
            native_login = f"{bff}/auth/native/login"
            with httpx.Client(timeout=10) as native:
                results["POST /auth/native/login (password only)"] = sequential(
                    native,
                    "POST",
                    native_login,
                    min(n, 200),
                    json={"login_id": "dave@example.com", "password": demo.password},
                    headers=CSRF,
                )
                guess = {"login_id": "bench-nobody@example.com", "password": "wrong"}
                for _ in range(10):  # spend this login id's budget (login.max_failures_per_login_id)
                    native.post(native_login, json=guess, headers=CSRF)
                results["POST /auth/native/login (refused: 429 before FusionAuth)"] = sequential(
                    native, "POST", native_login, min(n, 500), expect=429, json=guess, headers=CSRF
                )
            throughput = asyncio.run(concurrent(browser.cookies, f"{bff}/api/session", n, args.concurrency))
            report = {
                "requests_per_endpoint": n,
                "latency": results,
                f"GET /api/session req/s at concurrency {args.concurrency}": round(throughput, 1),
                "rss_mib_idle": round(idle_rss, 1),
                "rss_mib_after": round(rss_mib(server.pid), 1),
            }
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
            browser.close()
        finally:
            server.send_signal(signal.SIGINT)
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
