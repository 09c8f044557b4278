"""`stepup-bff serve`: our own listening socket (TCP_NODELAY for every worker), and several worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stepup_bff.ops.listen import PortInUse, bind_tcp
from support.live_server import free_port


def test_bound_socket_is_tcp_so_accepted_connections_get_nodelay() -> None:
    sock = bind_tcp("127.0.0.1", 0)
    seen: list[int] = []

    async def run() -> None:
        def protocol() -> asyncio.Protocol:
            class Probe(asyncio.Protocol):
                def connection_made(self, transport: asyncio.BaseTransport) -> None:
                    accepted = transport.get_extra_info("socket")
                    seen.append(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                    transport.close()

            return Probe()

        server = await asyncio.get_running_loop().create_server(protocol, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            for _ in range(100):
                if seen:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(run())
    # Without IPPROTO_TCP on the listener, asyncio leaves Nagle on (0) and keep-alive responses stall ~40 ms.
    assert seen == [1]


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(PortInUse, match="cannot listen on 127.0.0.1"):
            bind_tcp("127.0.0.1", taken.getsockname()[1])


def _environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        **{name: value for name, value in os.environ.items() if not name.startswith("STEPUP_")},
        "STEPUP_FUSIONAUTH__URL": "http://127.0.0.1:9",
        "STEPUP_FUSIONAUTH__API_KEY": "k",
        "STEPUP_FUSIONAUTH__APPLICATION_ID": "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e",
        "STEPUP_FUSIONAUTH__CLIENT_SECRET": "s",
        "STEPUP_SESSION__SECRET_KEYS": '["' + "w" * 40 + '"]',
        "STEPUP_STORAGE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        **settings,
    }


@pytest.mark.live
def test_serve_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    env = _environment(tmp_path)
    process = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "-m", "stepup_bff", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "serve --workers 2 did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        # The FusionAuth-backed routes work in the workers too (FusionAuth is down here: a clean 503 redirect).
        login = httpx.get(f"http://127.0.0.1:{port}/auth/login", timeout=10)
        assert login.status_code == 303 and login.headers["location"] == "/?error=fusionauth_unavailable"
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
        if process.stderr:
            process.stderr.close()


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=5).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _healthz_count(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    labels = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    return samples.get(("stepup_bff_http_request_duration_seconds_count", labels), 0.0)


def _workers(serve_pid: int) -> set[int]:
    """The worker processes of `serve` (uvicorn spawns them with multiprocessing)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent == serve_pid and b"spawn_main" in command:
            found.add(int(entry.name))
    return found


def _wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


@pytest.mark.live
def test_serve_with_two_workers_aggregates_metrics_on_a_listener_of_its_own(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = _environment(tmp_path, STEPUP_METRICS__PORT=str(metrics_port), STEPUP_LOG_FORMAT="json")
    public, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    out, err = tmp_path / "out.log", tmp_path / "err.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "-m", "stepup_bff", "serve", "--port", str(port), "--workers", "2"],
            env=env,
            cwd=tmp_path,
            stdout=stdout,
            stderr=stderr,
        )
    served = 0
    try:

        def spawned() -> bool:
            assert process.poll() is None, err.read_text()
            return len(_workers(process.pid)) == 2

        _wait_for(spawned, "serve --workers 2 did not spawn two workers")
        # The directory `serve` made for this run, as the workers inherited it.
        environ = Path(f"/proc/{min(_workers(process.pid))}/environ").read_bytes().split(b"\0")
        (directory,) = [Path(item.split(b"=", 1)[1].decode()) for item in environ if item.startswith(b"PROMETHEUS_")]

        def both_workers_up() -> bool:
            assert process.poll() is None, err.read_text()
            return len(list(directory.glob("gauge_livesum_*.db"))) == 2

        _wait_for(both_workers_up, "serve --workers 2 did not start two workers")
        for _ in range(30):  # a new connection each time, so the kernel hands them to either worker
            try:
                served += httpx.get(f"{public}/healthz", timeout=5).status_code == 200
            except httpx.TransportError:
                time.sleep(0.2)
        assert served >= 20
        samples = _scrape(metrics)
        assert samples[("stepup_bff_workers", ())] == 2  # both workers' files, summed by the one listener
        assert _healthz_count(samples) == served
        # Never on the public listener.
        assert httpx.get(f"{public}/metrics", timeout=5).status_code == 404

        # The access lines are written together, at most 0.2 s after their requests (ops/logs.AccessLogHandler): all
        # of them are out before a worker is killed outright, which would take its last fraction of a second along.
        _wait_for(lambda: out.read_text().count('"stepup_bff.access"') >= served, "the access lines were not written")
        # A worker dies: uvicorn starts another; its counts stay in the sum, its live gauges do not.
        before = _workers(process.pid)
        assert len(before) == 2
        os.kill(min(before), signal.SIGKILL)

        def replaced() -> bool:
            now = _workers(process.pid)
            # ... and the new worker has written its own values (its app is built).
            written = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("gauge_livesum_*.db")}
            return len(now) == 2 and now != before and now <= written

        _wait_for(replaced, "the dead worker was not replaced")
        samples = _scrape(metrics)
        assert samples[("stepup_bff_workers", ())] == 2  # 3 if the dead worker's gauge were still counted
        assert _healthz_count(samples) == served
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    assert not directory.exists()  # the metric files go with the run
    # JSON logs: every line one object; each access line has its request id.
    records = [json.loads(line) for line in (out.read_text() + err.read_text()).splitlines()]
    access = [record for record in records if record["logger"] == "stepup_bff.access"]
    assert len(access) >= served and all(len(record["request_id"]) == 32 for record in access)


@pytest.mark.live
def test_serve_with_one_worker_serves_its_metrics_and_refuses_a_taken_metrics_port(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    env = _environment(tmp_path, STEPUP_METRICS__PORT=str(metrics_port), STEPUP_ACCESS_LOG="false")
    command = [sys.executable, "-m", "stepup_bff", "serve", "--port", str(port)]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE)  # noqa: S603
    try:

        def answers() -> bool:
            assert process.poll() is None
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        _wait_for(answers, "serve did not start")
        samples = _scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        assert samples[("stepup_bff_workers", ())] == 1 and _healthz_count(samples) == 1
        # A second server cannot take the metrics port: a clear message, not a traceback.
        other = _environment(tmp_path, STEPUP_METRICS__PORT=str(metrics_port))
        taken = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "stepup_bff", "serve", "--port", str(free_port())],
            env=other,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert taken.returncode == 1
        assert f"stepup-bff serve: cannot listen for metrics on 127.0.0.1:{metrics_port}" in taken.stderr
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()


def test_serve_never_loads_the_dev_server() -> None:
    probe = (
        "import sys, stepup_bff.cli, stepup_bff.app; "
        "stepup_bff.app.create_app; "
        "sys.exit(1 if any(name.startswith('fusionauth_dev') for name in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0  # noqa: S603


@pytest.mark.live
def test_dev_command_runs_both_servers_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    bff_port, fusionauth_port = free_port(), free_port()
    process = subprocess.Popen(  # noqa: S603 - our own command
        [
            sys.executable, "-m", "stepup_bff", "dev",
            "--port", str(bff_port), "--fusionauth-port", str(fusionauth_port), "--data-dir", str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                bff = httpx.get(f"http://localhost:{bff_port}/healthz", timeout=1)
                fusionauth = httpx.get(f"http://localhost:{fusionauth_port}/api/status", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, "stepup-bff dev exited while starting"
                assert time.monotonic() < deadline, "stepup-bff dev did not start"
                time.sleep(0.1)
        assert bff.status_code == 200 and fusionauth.status_code == 200
        # On a port other than 9000, the dev FusionAuth was told the BFF's callback: sign-in starts cleanly.
        login = httpx.get(f"http://localhost:{bff_port}/auth/login", timeout=5)
        form = httpx.get(login.headers["location"], timeout=5)
        assert form.status_code == 200 and "<form" in form.text
    finally:
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert f"running at http://localhost:{bff_port}" in out
    assert "NOT FusionAuth" in out
    for user in ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"):
        assert user in out
    assert f"http://localhost:{fusionauth_port}/_dev" in out
    assert out.rstrip().endswith("stepup-bff dev: stopped")
