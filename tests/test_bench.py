"""The benchmark (bench/run.py, issue 11) still runs end to end: every route, its floor, the anchor, the durability
check. It asserts no figure at all: speed is judged by running the benchmark, never by a timed test."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
    # The three routes with a floor have one measured; the list has none.
    assert [name for name, cells in rows.items() if cells[6].strip()] == [
        "`GET /healthz`",
        "`GET /api/session, signed in`",
        "`POST /api/telegrams, stepped up`",
    ]
    # The run ends by counting the database: every telegram answered 201 was stored (else it exits non-zero).
    assert "Telegrams answered 201:" in table and "Resident memory after the run:" in table
    # And every stepped-up telegram the BFFs answered 201 has its privileged_action event (the same transaction).
    sent, recorded = (
        int(n) for n in re.findall(r"by the BFFs: (\d+); their privileged_action events: (\d+)", table)[0]
    )
    assert sent > 0 and recorded >= sent
