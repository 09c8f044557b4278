"""The BFF's routes against a bare FastAPI route, measured side by side in one run: `make bench`, or

    .venv/bin/python bench/run.py [--rounds 3] [--duration 4] [--connections 32] [--workers 1,2]
        [--store sqlite|redis] [--database sqlite|postgresql] [--access-log on|off] [--metrics on|off]
        [--load wrk|python] [--json FILE]

What it does:
1. Starts the dev FusionAuth (src/fusionauth_dev) in this process: it is only there to sign in and step up once.
2. Starts the real `stepup-bff serve`, one worker, and, for each other count in --workers, another `serve
   --workers N`: every one on the same store, database and session keys, so one session cookie is valid on all.
   Settings as production defaults them, except: `step_up.max_age` = 3600, so that the step-up does not expire
   during the run, `step_up.single_use` = false and `step_up.actions.send_telegram.bind_transaction` = false (one
   step-up may authorize many telegrams).
3. Starts the anchor, `bench/bare.py`: a bare FastAPI route returning `{"status": "ok"}`, under uvicorn with the
   same options `serve` uses, one worker, no access log, in a process of its own. The same process serves the
   floors: bare routes that do only what the BFF's route cannot do without (the security headers and the access
   line on every answer; the session check; the session check and the durable commit: see bench/bare.py), each
   measured beside its route. The gap between a route and its floor is what everything around the work costs
   (middleware, dependency injection, the edge's rules, the request id, the step-up guard, the activity event).
4. Signs alice in through the dev FusionAuth's form, steps up with her authenticator code, and checks that every
   BFF sees her signed in and stepped up.
5. Drives every target with the same load generator: `wrk -t1 -c<connections> -d<duration>s` where installed,
   else `bench/loadgen.py` (Python, one process). Round after round, for each route the bare route and each BFF
   are measured one right after the other (the order alternating between rounds), so that load from anything else
   on the machine lands on both sides of each ratio. Each stepped-up POST carries a unique Idempotency-Key, so
   every one is a new telegram; after the run the database must hold at least as many telegrams as were answered
   201 (every one of them committed, synchronously, before its answer), and as many privileged_action events as
   the BFFs answered 201 (each committed with its telegram).
6. Prints a Markdown table (best round's requests/s, its p50 and p99, the ratio to the bare route of that same
   round, the range of the ratios over the rounds, the CPU time the server spent per request and the bare route's
   over it, the floor's requests/s, its ratio and its CPU per request), the resident memory of each BFF after the
   run, the machine, its load average, and how much CPU time the hypervisor took during the measurements (steal,
   from /proc/stat). `--json FILE` also writes every sample, with its CPU per request, how busy the server was
   (its CPU time over the wall time: 1.0 is one core) and the steal during it.

On a shared machine the absolute numbers move with whatever else runs; the ratios, measured a few seconds apart,
move much less. The CPU per request (the server's own user and system time, from /proc/PID/stat) does not count the
time the machine gave to others, but it still rises on a busy machine (its caches are shared): measured here, the
bare route's 98 µs in a quiet round were 141 µs in one with a tenth of the machine stolen. Where the steal line shows
much, the rounds it names say more about the machine than about the code. Run it on a quiet machine for figures to
publish.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stepup_bff import __version__  # noqa: E402
from stepup_bff.ops.dev import authorize_bff_request, build_stack, default_kickstart  # noqa: E402
from support.dev_stack import KICKSTART_ENV, RunningStack, settings_environment, stop_processes  # noqa: E402
from support.live_server import free_port, serve  # noqa: E402

CSRF = {"X-CSRF": "1"}
TELEGRAM = json.dumps({"recipient": "Bench", "message": "la la la"})
# The bench's own step-up settings (see the module docstring): nothing else differs from the defaults.
# The telegram route is bound to its transaction by default (one step-up per telegram): under load one step-up must
# authorize every request, so the benchmark measures the unbound guard (the same checks, minus the one-time grant).
STEP_UP = {"max_age": 3600, "single_use": False, "actions": {"send_telegram": {"bind_transaction": False}}}


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    signed_in: bool = False
    body: str | None = None
    unique_header: str | None = None
    headers: tuple[str, ...] = ()
    # The route's floor on the bare app (bench/bare.py): a bare FastAPI route doing only the route's own work.
    floor: str | None = None


ROUTES = (
    Route("GET /healthz", "GET", "/healthz", floor="/floor/healthz"),
    Route("GET /api/session, signed in", "GET", "/api/session", signed_in=True, floor="/floor/session"),
    Route("GET /api/telegrams, signed in (the newest 100)", "GET", "/api/telegrams", signed_in=True),
    Route(
        "POST /api/telegrams, stepped up",
        "POST",
        "/api/telegrams",
        signed_in=True,
        body=TELEGRAM,
        unique_header="Idempotency-Key",
        headers=("Content-Type: application/json", "X-CSRF: 1"),
        floor="/floor/telegram",
    ),
)

ANCHOR = Route("bare FastAPI route", "GET", "/bare")


@dataclass
class Target:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    bare: bool = False
    workers: int = 1
    floor: bool = False  # the bare app's process, measured on the route's floor


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    # What the measurement cost (`usage`, below); None where /proc does not tell.
    cpu_us: float | None = None  # CPU time (user + system, every thread and worker) per request, in µs
    busy: float | None = None  # that CPU time over the measurement's wall time: 1.0 is one core kept busy
    steal_pct: float | None = None  # the share of the machine's CPU time the hypervisor took meanwhile


@dataclass
class Results:
    # route name -> target name -> one sample per round
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)

    def add(self, route: str, target: str, sample: Sample) -> None:
        self.samples.setdefault(route, {}).setdefault(target, []).append(sample)


# -- load generators ------------------------------------------------------------------------------------------------

WRK_SCRIPT = """
wrk.method = {method}
{body}
{headers}
local unique = {unique}
local prefix = {prefix}
local n = 0
if unique then
  request = function()
    n = n + 1
    local headers = {{}}
    for name, value in pairs(wrk.headers) do headers[name] = value end
    headers[unique] = prefix .. "-" .. n
    return wrk.format(nil, nil, headers)
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {{"requests":%d,"seconds":%f,"p50_ms":%f,"p99_ms":%f,"non_2xx":%d,"errors":%d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def lua(value: str | None) -> str:
    return "nil" if value is None else json.dumps(value)  # a JSON string is a valid Lua string literal here


def drive(load: str, url: str, route: Route, cookie: str | None, duration: float, connections: int) -> Sample:
    headers = list(route.headers) + ([f"Cookie: {cookie}"] if cookie else [])
    if load == "wrk":
        script = WRK_SCRIPT.format(
            method=lua(route.method),
            body=f"wrk.body = {lua(route.body)}" if route.body else "",
            headers="\n".join(
                f"wrk.headers[{lua(name)}] = {lua(value.strip())}"
                for name, _, value in (header.partition(":") for header in headers)
            ),
            unique=lua(route.unique_header),
            prefix=lua(secrets.token_hex(6)),
        )
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
            file.write(script)
        try:
            command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", file.name, url]
            output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout  # noqa: S603
        finally:
            os.unlink(file.name)
        lines = [line for line in output.splitlines() if line.startswith("BENCH ")]
        if not lines:
            raise SystemExit(f"no result from wrk against {url}:\n{output}")
        summary = json.loads(lines[-1].removeprefix("BENCH "))
    else:
        command = [sys.executable, str(BENCH / "loadgen.py"), url, f"--connections={connections}"]
        command += [f"--duration={duration}", f"--method={route.method}", *(f"--header={h}" for h in headers)]
        if route.body:
            command.append(f"--body={route.body}")
        if route.unique_header:
            command.append(f"--unique-header={route.unique_header}")
        output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True).stdout  # noqa: S603
        summary = json.loads(output)
    if summary["non_2xx"] or summary["errors"] or not summary["requests"]:
        raise SystemExit(f"{route.method} {url} failed under load: {summary}")
    return Sample(summary["requests"] / summary["seconds"], summary["p50_ms"], summary["p99_ms"], summary["requests"])


# -- what a measurement cost ----------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from a /proc/PID/stat line: every thread of the process. Fields 14 and 15, counted
    after the command name, which is in parentheses and may itself hold spaces and parentheses."""
    fields = stat.rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])


def machine_ticks(stat: str) -> tuple[int, int]:
    """(all, stolen) CPU ticks of every core from /proc/stat's first line. Steal is the time a virtual machine's
    cores were ready to run but the hypervisor ran someone else: on a shared machine, the noise in a measurement."""
    values = [int(value) for value in stat.splitlines()[0].split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already inside user and nice)
    return sum(values[:8]), values[7] if len(values) > 7 else 0


@dataclass(frozen=True)
class Usage:
    """A snapshot: when, the target's CPU ticks (its process and, for several workers, theirs), the machine's."""

    at: float
    ticks: int | None
    machine: tuple[int, int] | None


def usage(target: Target) -> Usage:
    pids = [target.process.pid] + (children(target.process.pid) if target.workers > 1 else [])
    ticks: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        ticks = sum(process_ticks(Path(f"/proc/{pid}/stat").read_text()) for pid in pids)
    machine = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        machine = machine_ticks(Path("/proc/stat").read_text())
    return Usage(time.monotonic(), ticks, machine)


def with_usage(sample: Sample, before: Usage, after: Usage) -> Sample:
    cpu_us = busy = steal_pct = None
    # Fewer ticks after than before: a worker was replaced meanwhile, and its CPU time went with it.
    if before.ticks is not None and after.ticks is not None and after.ticks >= before.ticks and sample.requests:
        seconds = (after.ticks - before.ticks) / CLOCK_TICKS
        cpu_us = seconds * 1e6 / sample.requests
        busy = seconds / (after.at - before.at)
    if before.machine is not None and after.machine is not None and after.machine[0] > before.machine[0]:
        steal_pct = 100 * (after.machine[1] - before.machine[1]) / (after.machine[0] - before.machine[0])
    return replace(sample, cpu_us=cpu_us, busy=busy, steal_pct=steal_pct)


# -- processes ------------------------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def wait_up(target: Target, deadline: float) -> None:
    while time.monotonic() < deadline:
        if target.process.poll() is not None:
            raise SystemExit(f"{target.name} exited:\n{target.log.read_text(errors='replace')}")
        try:
            path = "/bare" if target.bare else "/healthz"
            if httpx.get(f"{target.url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{target.name} did not start:\n{target.log.read_text(errors='replace')}")


def start(name: str, command: list[str], env: dict[str, str], url: str, data: Path, **kw: Any) -> Target:
    log = data / f"{name.replace(' ', '-')}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command, env=env, cwd=data, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
        )
    return Target(name, url, process, log, **kw)


@contextlib.contextmanager
def backends(store: str, database: str, data: Path) -> Iterator[tuple[str, str]]:
    """The store's and the database's URLs: SQLite files in `data`, or throwaway servers (tests/support/backends.py)."""
    with contextlib.ExitStack() as stack:
        sqlite_url = f"sqlite:///{data / 'bench.sqlite3'}"
        store_url = database_url = sqlite_url
        if store == "redis" or database == "postgresql":
            from support import backends as servers

            if store == "redis":
                store_url = stack.enter_context(servers.redis_server()).url
            if database == "postgresql":
                database_url = stack.enter_context(servers.postgres_server()).create_database("bench")
        yield store_url, database_url


# The telegrams, and the activity events that record the stepped-up ones (the floor's telegrams have none).
_COUNTS = (
    "SELECT (SELECT count(*) FROM telegrams), (SELECT count(*) FROM activity_events WHERE kind = 'privileged_action')"
)


def count_records(database_url: str) -> tuple[int, int]:
    """(telegrams, privileged_action events) in the database."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            telegrams, events = db.execute(_COUNTS).fetchone()
            return int(telegrams), int(events)
    import psycopg

    with psycopg.connect(database_url) as db:
        row = db.execute(_COUNTS).fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)


@contextlib.contextmanager
def profiling(directory: Path | None, target: Target, route: Route, round_number: int, duration: int) -> Iterator[None]:
    if directory is None or target.bare or target.floor or target.workers != 1 or round_number != 0:
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / (route.name.replace(" ", "_").replace("/", "_").replace(",", "") + ".txt")
    command = ["py-spy", "record", "--format", "raw", "--rate", "500", "--nonblocking", "--duration", str(duration)]
    command += ["--pid", str(target.process.pid), "--output", str(out)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        yield
    finally:
        spy.wait(timeout=duration + 30)


# -- the run --------------------------------------------------------------------------------------------------------


def sign_in_and_step_up(live: RunningStack, bffs: list[Target]) -> str:
    browser = live.sign_in("alice@example.com")
    try:
        started = browser.post(f"{live.bff_url}/api/step-up/start", json={}, headers=CSRF)
        started.raise_for_status()
        code = live.totp_code("alice@example.com")
        browser.post(f"{live.bff_url}/api/step-up/finish", json={"code": code}, headers=CSRF).raise_for_status()
        cookie = f"stepup_session={browser.cookies['stepup_session']}"
    finally:
        browser.close()
    for bff in bffs:
        state = httpx.get(f"{bff.url}/api/session", headers={"Cookie": cookie}, timeout=5).json()
        if not (state.get("authenticated") and state.get("step_up", {}).get("active")):
            raise SystemExit(f"{bff.name} does not see the session as signed in and stepped up: {state}")
    return cookie


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def report(
    results: Results, targets: list[Target], rss: dict[str, str], args: argparse.Namespace, info: dict[str, Any]
) -> str:
    bare = next(t.name for t in targets if t.bare)
    one = next(t.name for t in targets if not t.bare and not t.floor and t.workers == 1)
    more = [t for t in targets if not t.bare and not t.floor and t.workers > 1]
    floor = next((t.name for t in targets if t.floor), None)
    floors = floor is not None and any(floor in by_target for by_target in results.samples.values())
    lines = [
        f"stepup-bff {__version__} bench/run.py, {info['date']}: {info['machine']}",
        f"load average {info['load_before']} before, {info['load_after']} after; load generator {info['load']} "
        f"(-t1 -c{args.connections} -d{args.duration}s), {args.rounds} alternating rounds; "
        f"store {args.store}, database {args.database}, access log {args.access_log}, metrics {args.metrics}"
        + "".join(f", {setting}" for setting in args.env)
        + (f", the BFFs run by {args.bff_python}" if args.bff_python != sys.executable else ""),
        "",
        "| route | req/s (best round) | p50 | p99 | vs bare FastAPI (best round; all rounds) |"
        " CPU per request (bare's over the route's) |"
        + (" floor: req/s (vs bare), CPU per request |" if floors else "")
        + "".join(f" {t.workers} workers: req/s (vs 1) |" for t in more),
        "|---|---|---|---|---|---|" + "---|" * (len(more) + floors),
    ]

    def best(samples: list[Sample]) -> tuple[int, Sample]:
        index = max(range(len(samples)), key=lambda i: samples[i].rps)
        return index, samples[index]

    def cpu(sample: Sample, anchor: Sample | None = None) -> str:
        if sample.cpu_us is None:
            return "n/a"
        if anchor is None or anchor.cpu_us is None:
            return f"{sample.cpu_us:,.0f} µs"
        return f"{sample.cpu_us:,.0f} µs ({anchor.cpu_us / sample.cpu_us:.2f}x)"

    anchors = [s for by_target in results.samples.values() for s in by_target[bare]]
    anchor_cpu = [s.cpu_us for s in anchors if s.cpu_us is not None]
    lines.append(
        f"| bare FastAPI route (the anchor) | {max(s.rps for s in anchors):,.0f} | "
        f"{statistics.median(s.p50_ms for s in anchors):.1f} ms | "
        f"{statistics.median(s.p99_ms for s in anchors):.1f} ms | 1.00x | "
        + (f"{statistics.median(anchor_cpu):,.0f} µs (median) |" if anchor_cpu else "n/a |")
        + " |" * (len(more) + floors)
    )
    for route, by_target in results.samples.items():
        ratios = [b.rps / a.rps for a, b in zip(by_target[bare], by_target[one], strict=True)]
        index, sample = best(by_target[one])
        ratio = sample.rps / by_target[bare][index].rps
        cells = [
            f"`{route}`",
            f"{sample.rps:,.0f}",
            f"{sample.p50_ms:.1f} ms",
            f"{sample.p99_ms:.1f} ms",
            f"{ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
            cpu(sample, by_target[bare][index]),
        ]
        if floors:
            cells.append("")
            if floor in by_target:
                at, bottom = best(by_target[floor])
                cells[-1] = f"{bottom.rps:,.0f} ({bottom.rps / by_target[bare][at].rps:.2f}x), {cpu(bottom)}"
        for target in more:
            _, other = best(by_target[target.name])
            cells.append(f"{other.rps:,.0f} ({other.rps / sample.rps:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Resident memory after the run: " + "; ".join(f"{name} {value}" for name, value in rss.items())]
    lines.append(steal_line(results))
    lines.append(
        f"Telegrams answered 201: {info['created']}; in the database after the run: {info['stored']}. Stepped-up"
        f" telegrams answered 201 by the BFFs: {info['sent']}; their privileged_action events: {info['recorded']}."
    )
    return "\n".join(lines)


# Above this share of the machine taken by the hypervisor, a measurement is counted as a noisy one.
NOISY_STEAL_PCT = 5.0


def steal_line(results: Results) -> str:
    """How much of the machine the hypervisor took while each sample was measured: where it took much, that round's
    figures (its p99 first) say more about the machine than about the code."""
    stolen = [
        (sample.steal_pct, route, target, number)
        for route, by_target in results.samples.items()
        for target, samples in by_target.items()
        for number, sample in enumerate(samples, 1)
        if sample.steal_pct is not None
    ]
    if not stolen:
        return "CPU time taken by the hypervisor (steal) during the measurements: not reported by this system."
    highest = max(stolen, key=lambda item: item[0])
    noisy = sum(1 for item in stolen if item[0] > NOISY_STEAL_PCT)
    return (
        f"CPU time taken by the hypervisor (steal) during the measurements: median "
        f"{statistics.median(item[0] for item in stolen):.1f}%, highest {highest[0]:.1f}% "
        f"(`{highest[1]}`, {highest[2]}, round {highest[3]}); {noisy} of {len(stolen)} measurements above "
        f"{NOISY_STEAL_PCT:.0f}% (`--json` has each one's)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=4, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts; 1 is always measured")
    parser.add_argument("--store", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--access-log", choices=("on", "off"), default="on", help="default on, as in production")
    parser.add_argument("--metrics", choices=("on", "off"), default="off", help="on: metrics.port set (multiprocess)")
    parser.add_argument("--load", choices=("wrk", "python"), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--routes", help="comma-separated route numbers to measure (1-4), default all")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="STEPUP_NAME=VALUE",
        help="another setting for the BFFs, e.g. STEPUP_DATABASE__POOL_SIZE=32 (repeatable)",
    )
    parser.add_argument(
        "--bff-python",
        default=sys.executable,
        metavar="PYTHON",
        help="the interpreter that runs `stepup-bff serve`, e.g. a production install's (pip install . in a venv "
        "of its own: no test tools, whose modules some libraries import when they find them); default this one",
    )
    parser.add_argument("--json", type=Path, help="also write every sample here")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="with py-spy on PATH: profile the one-worker BFF during each route's first measurement, into DIR "
        "(collapsed stacks, for flamegraph.pl or speedscope.app)",
    )
    args = parser.parse_args()
    workers = sorted({1, *(int(count) for count in args.workers.split(",") if count.strip())})
    routes = [ROUTES[int(i) - 1] for i in args.routes.split(",")] if args.routes else list(ROUTES)
    info: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "load": args.load,
        "load_before": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }

    data = Path(tempfile.mkdtemp(prefix="stepup-bench-"))
    targets: list[Target] = []
    try:
        with backends(args.store, args.database, data) as (store_url, database_url):
            ports = {count: free_port() for count in workers}
            fusionauth_port = free_port()
            stack = build_stack(
                bff_port=ports[1],
                fusionauth_port=fusionauth_port,
                kickstart=default_kickstart(),
                storage_url=store_url,
                database_url=database_url,
                env=KICKSTART_ENV,
                step_up=STEP_UP,
            )
            with serve(stack.fusionauth.app, port=fusionauth_port):
                httpx.Client(timeout=5).send(authorize_bff_request(stack)).raise_for_status()
                base_env = {
                    **{name: value for name, value in os.environ.items() if not name.startswith("STEPUP_")},
                    **settings_environment(stack.settings),
                    "STEPUP_ACCESS_LOG": "true" if args.access_log == "on" else "false",
                    **dict(setting.split("=", 1) for setting in args.env),
                }
                bare_port = free_port()
                bare = start(
                    "bare FastAPI",
                    [sys.executable, str(BENCH / "bare.py"), str(bare_port)],
                    base_env,
                    f"http://127.0.0.1:{bare_port}",
                    data,
                    bare=True,
                )
                targets.append(bare)
                # The same process, measured on each route's floor (bench/bare.py).
                floor = Target("floor", bare.url, bare.process, bare.log, floor=True)
                for count, port in ports.items():
                    env = {**base_env, "STEPUP_PUBLIC_URL": f"http://localhost:{port}"}
                    if args.metrics == "on":
                        env["STEPUP_METRICS__PORT"] = str(free_port())
                    command = [args.bff_python, "-m", "stepup_bff", "serve", "--port", str(port)]
                    command += ["--workers", str(count)]
                    name = f"stepup-bff serve --workers {count}"
                    targets.append(start(name, command, env, f"http://127.0.0.1:{port}", data, workers=count))
                for target in targets:
                    wait_up(target, time.monotonic() + 60)
                bffs = [t for t in targets if not t.bare]
                targets.insert(1, floor)
                cookie = sign_in_and_step_up(RunningStack(stack, stack.bff_url, stack.fusionauth_url), bffs)

                def measure(target: Target, route: Route, duration: float) -> Sample:
                    if target.bare:  # the same anchor next to every route
                        return drive(args.load, f"{target.url}{ANCHOR.path}", ANCHOR, None, duration, args.connections)
                    if target.floor:  # measured only for a route that has one (measured(), below)
                        return drive(args.load, f"{target.url}{route.floor}", route, cookie, duration, args.connections)
                    return drive(args.load, f"{target.url}{route.path}", route, cookie, duration, args.connections)

                def measured(route: Route) -> list[Target]:
                    return [t for t in targets if not t.floor or route.floor is not None]

                for route in routes:  # warm up: imports, caches, connections, the JIT-less interpreter's branches
                    for target in measured(route):
                        measure(target, route, 1)
                before = count_records(database_url)  # after the warm-up: its telegrams are not counted as answered
                results = Results()
                created = sent = 0
                for round_number in range(args.rounds):
                    for route in routes:
                        order = measured(route) if round_number % 2 == 0 else measured(route)[::-1]
                        for target in order:
                            with profiling(args.profile, target, route, round_number, args.duration):
                                before_use = usage(target)
                                sample = with_usage(measure(target, route, args.duration), before_use, usage(target))
                            results.add(route.name, target.name, sample)
                            if route.method == "POST" and not target.bare:
                                created += sample.requests
                                if not target.floor:
                                    sent += sample.requests  # through the step-up guard: each one recorded
                    sys.stderr.write(f"round {round_number + 1}/{args.rounds} done\n")
                info["load_after"] = " ".join(f"{value:.2f}" for value in os.getloadavg())
                rss: dict[str, str] = {}
                for target in bffs:
                    workers_rss = [rss_mib(pid) for pid in children(target.process.pid)] if target.workers > 1 else []
                    if workers_rss:
                        rss[target.name] = f"{max(workers_rss):.0f} MiB per worker (largest)"
                    else:
                        rss[target.name] = f"{rss_mib(target.process.pid):.0f} MiB"
                after = count_records(database_url)
                info["stored"], info["recorded"] = after[0] - before[0], after[1] - before[1]
                info["created"], info["sent"] = created, sent
                if any(route.method == "POST" for route in routes):
                    if info["stored"] < created:
                        raise SystemExit(f"{created} telegrams were answered 201, only {info['stored']} are stored")
                    if info["recorded"] < sent:
                        raise SystemExit(f"{sent} stepped-up telegrams were sent, only {info['recorded']} recorded")
    finally:
        # The floor is the bare app's own process: each process once.
        stop_processes(dict.fromkeys(target.process for target in targets), timeout=30)
        shutil.rmtree(data, ignore_errors=True)

    sys.stdout.write(report(results, targets, rss, args, info) + "\n")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "info": info,
                    "samples": {
                        route: {name: [vars(s) for s in samples] for name, samples in by_target.items()}
                        for route, by_target in results.samples.items()
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
