"""Serve any ASGI app over real HTTP on 127.0.0.1, from a background thread.

For clients that cannot talk to an app in-process (FusionAuth's Python client uses ``requests``; a browser needs a
socket). ``tests/`` is on ``sys.path`` under pytest, so: ``from support.live_server import free_port, serve``::

    with serve(app) as live:
        httpx.get(f"{live.url}/api/status")

``serve()`` binds the socket itself (port 0 by default) before uvicorn starts, so there is no window in which another
process can take the port; ``free_port()`` is for when a URL must be known before the app is built, and has that
small race.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS may hand it out again before you bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int
    server: uvicorn.Server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def serve(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
    log_level: str = "warning",
    http: str = "auto",
) -> Iterator[LiveServer]:
    """Run ``app`` under uvicorn in a daemon thread until the ``with`` block ends.

    ``port=0`` picks a free port race-free. Waits for ``server.started``; on exit sets ``should_exit`` and joins.
    """
    sock: socket.socket | None = None
    if port == 0:
        # IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (else ~40 ms per response).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
    # log_config=None: leave the test process's logging alone (pytest's capture, caplog).
    # ws="none": no websocket library import, so no stray deprecation warnings under filterwarnings=error.
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        ws="none",
        lifespan="auto",
        http=http,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock]} if sock is not None else {},
        name=f"uvicorn-{port}",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"uvicorn stopped while starting on {host}:{port}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start on {host}:{port} within {startup_timeout} s")
            time.sleep(0.01)
        yield LiveServer(host=host, port=port, server=server)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if sock is not None:
            sock.close()
