"""`stepup-bff serve`: our own listening socket (TCP_NODELAY for every worker), and several worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


@pytest.mark.live
def test_serve_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "STEPUP_FUSIONAUTH__URL": "http://127.0.0.1:9",
        "STEPUP_FUSIONAUTH__API_KEY": "k",
        "STEPUP_FUSIONAUTH__APPLICATION_ID": "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e",
        "STEPUP_FUSIONAUTH__CLIENT_SECRET": "s",
        "STEPUP_SESSION__SECRET_KEYS": '["' + "w" * 40 + '"]',
        "STEPUP_STORAGE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
    }
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
