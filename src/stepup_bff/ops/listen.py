"""Listening sockets we bind ourselves: for `dev` (two servers, clear "port in use" errors) and `serve --workers`
(one socket shared by the worker processes)."""

from __future__ import annotations

import socket


class PortInUse(OSError):
    pass


def bind_tcp(host: str, port: int) -> socket.socket:
    """A bound TCP socket, ready for uvicorn's `sockets=[...]`.

    proto=IPPROTO_TCP matters: asyncio turns on TCP_NODELAY for accepted connections only when the listening socket
    says TCP, and without it Nagle's algorithm plus the client's delayed ACK add ~40 ms to every keep-alive response
    written in two parts. uvicorn's own bind_socket() leaves proto at 0 (Kludex/uvicorn#3149, open), which is why
    `serve --workers N` binds here instead.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)  # the worker processes inherit it
    return sock
