"""The benchmark (bench/run.py, issue 11) still runs end to end: every route, its floor, the anchor, the durability
check. It asserts no figure at all: speed is judged by running the benchmark, never by a timed test."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_benchmark_runs_every_route_and_floor_and_checks_every_telegram_is_stored(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--rounds=1", "--duration=1", "--workers=1"]
    # The Python load generator: the one a machine without wrk uses, and CI installs no wrk.
    command += ["--load=python", "--connections=4", f"--json={tmp_path / 'samples.json'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)  # noqa: S603
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout
    for route in ("GET /healthz", "GET /api/session, signed in", "GET /api/telegrams", "POST /api/telegrams"):
        assert f"| `{route}" in table
    assert "| bare FastAPI route (the anchor) |" in table and "floor: req/s (vs bare)" in table
    rows = {line.split("|")[1].strip(): line.split("|") for line in table.splitlines() if line.startswith("| `")}
    # The three routes with a floor have one measured, with its CPU per request; the list has none.
    assert [name for name, cells in rows.items() if cells[7].strip()] == [
        "`GET /healthz`",
        "`GET /api/session, signed in`",
        "`POST /api/telegrams, stepped up`",
    ]
    floor_cells = [cells[7] for cells in rows.values() if cells[7].strip()]
    assert all(re.fullmatch(r" [\d,]+ \(\d\.\d\dx\), [\d,]+ µs ", cell) for cell in floor_cells), floor_cells
    # Every route: the CPU time its server spent per request, and the bare route's over it (here, on Linux).
    assert all(re.fullmatch(r" [\d,]+ µs \(\d+\.\d\dx\) ", cells[6]) for cells in rows.values()), rows
    steal = r"CPU time taken by the hypervisor \(steal\) during the measurements: median [\d.]+%, highest [\d.]+%"
    assert re.search(steal + r" \(`[^`]+`, [^,]+, round 1\); \d+ of \d+ measurements above 5%", table), table
    samples = json.loads((tmp_path / "samples.json").read_text())["samples"]
    every = [sample for by_target in samples.values() for runs in by_target.values() for sample in runs]
    assert every and all(s["cpu_us"] > 0 and s["busy"] > 0 and s["steal_pct"] >= 0 for s in every)
    # The run ends by counting the database: every telegram answered 201 was stored (else it exits non-zero).
    assert "Telegrams answered 201:" in table and "Resident memory after the run:" in table
    # And every stepped-up telegram the BFFs answered 201 has its privileged_action event (the same transaction).
    sent, recorded = (
        int(n) for n in re.findall(r"by the BFFs: (\d+); their privileged_action events: (\d+)", table)[0]
    )
    assert sent > 0 and recorded >= sent


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    bench = _bench_module()
    # /proc/PID/stat: utime and stime are fields 14 and 15, counted after the parenthesised command name.
    stat = "4242 (python (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 731 129 0 0 20 0 3 0 555 1 2\n"
    assert bench.process_ticks(stat) == 731 + 129


def test_steal_is_the_eighth_value_of_the_machine_line_and_the_total_counts_no_guest_time_twice() -> None:
    bench = _bench_module()
    stat = "cpu  100 5 50 800 10 2 3 30 40 0\ncpu0 50 2 25 400 5 1 1 15 20 0\nintr 1 2 3\n"
    assert bench.machine_ticks(stat) == (100 + 5 + 50 + 800 + 10 + 2 + 3 + 30, 30)
    # An older kernel without the steal column: nothing stolen.
    assert bench.machine_ticks("cpu  100 5 50 800 10 2 3\n") == (970, 0)


def test_usage_turns_two_snapshots_into_cpu_per_request_busy_and_steal() -> None:
    bench = _bench_module()
    sample = bench.Sample(rps=1000.0, p50_ms=1.0, p99_ms=2.0, requests=4000)
    ticks = bench.CLOCK_TICKS
    before = bench.Usage(at=10.0, ticks=0, machine=(1000, 10))
    after = bench.Usage(at=14.0, ticks=2 * ticks, machine=(1800, 50))  # 2 s of CPU over 4 s of wall time
    measured = bench.with_usage(sample, before, after)
    assert measured.cpu_us == pytest.approx(500.0) and measured.busy == pytest.approx(0.5)
    assert measured.steal_pct == pytest.approx(5.0)
    # Where /proc could not be read: the sample stays as it was, with nothing made up.
    unknown = bench.with_usage(sample, bench.Usage(10.0, None, None), bench.Usage(14.0, None, None))
    assert (unknown.cpu_us, unknown.busy, unknown.steal_pct) == (None, None, None)
    # A worker replaced during the measurement took its CPU time with it: no figure rather than a negative one.
    replaced = bench.with_usage(sample, bench.Usage(10.0, 5 * ticks, None), bench.Usage(14.0, ticks, None))
    assert replaced.cpu_us is None and replaced.busy is None


def test_the_steal_line_names_the_worst_measurement_and_counts_the_noisy_ones() -> None:
    bench = _bench_module()
    results = bench.Results()
    for target, steals in (("bare FastAPI", [0.5, 9.0]), ("stepup-bff serve --workers 1", [1.0, 21.5])):
        for steal in steals:
            results.add("GET /healthz", target, bench.Sample(1.0, 1.0, 1.0, 1, cpu_us=1.0, busy=1.0, steal_pct=steal))
    line = bench.steal_line(results)
    assert "median 5.0%, highest 21.5% (`GET /healthz`, stepup-bff serve --workers 1, round 2)" in line
    assert "2 of 4 measurements above 5%" in line
    # Without /proc/stat: said so, not a made-up 0%.
    empty = bench.Results()
    empty.add("GET /healthz", "bare FastAPI", bench.Sample(1.0, 1.0, 1.0, 1))
    assert bench.steal_line(empty).endswith("not reported by this system.")
