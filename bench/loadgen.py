"""The benchmark's load generator when `wrk` is not installed: keep-alive HTTP/1.1 over N connections for D seconds,
one request in flight per connection (as `wrk -t1 -cN` does), and the same summary `bench/run.py` reads from wrk.

    python bench/loadgen.py URL --connections 32 --duration 4 [--method POST] [--header 'Name: value']...
        [--body JSON] [--unique-header Idempotency-Key]

It runs in a process of its own (so it gets a core of its own, as wrk does) on uvloop when installed, writes
requests as prebuilt bytes and parses only the status line and Content-Length, so that it costs the server's core
nothing and its own core little. It reaches a few tens of thousands of requests/s on one core: below wrk, but well
above what a Python server answers, which is what a same-run ratio needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    def __init__(self, owner: _Load) -> None:
        self._owner = owner
        self._buffer = b""
        self._sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's transport
        self._send()

    def _send(self) -> None:
        if self.transport is None:
            return
        if time.perf_counter() >= self._owner.deadline:
            self.transport.close()
            return
        self._sent_at = time.perf_counter()
        self.transport.write(self._owner.next_request())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self._buffer) < end + 4 + length:
                return
            status = int(head[9:12])
            self._buffer = self._buffer[end + 4 + length :]
            self._owner.record(status, time.perf_counter() - self._sent_at)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.closed(exc)


class _Load:
    def __init__(self, args: argparse.Namespace) -> None:
        url = urlsplit(args.url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        body = args.body.encode() if args.body else b""
        headers = [f"Host: {url.netloc}", *args.header]
        if body:
            headers.append(f"Content-Length: {len(body)}")
        self._head = f"{args.method} {path} HTTP/1.1\r\n" + "".join(f"{h}\r\n" for h in headers)
        self._body = body
        self._unique = args.unique_header
        self._prefix = secrets.token_hex(6)
        self._count = 0
        self._fixed = (self._head + "\r\n").encode() + body
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.errors = 0
        self.deadline = 0.0
        self._open = 0
        self.done: asyncio.Future[None] | None = None

    def next_request(self) -> bytes:
        if self._unique is None:
            return self._fixed
        self._count += 1
        return f"{self._head}{self._unique}: {self._prefix}-{self._count}\r\n\r\n".encode() + self._body

    def record(self, status: int, seconds: float) -> None:
        if time.perf_counter() <= self.deadline:
            self.latencies.append(seconds)
            if not 200 <= status < 300:
                self.non_2xx += 1

    def closed(self, exc: Exception | None) -> None:
        if exc is not None:
            self.errors += 1
        self._open -= 1
        if self._open == 0 and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run(self, connections: int, duration: float) -> float:
        loop = asyncio.get_running_loop()
        self.done = loop.create_future()
        started = time.perf_counter()
        self.deadline = started + duration
        for _ in range(connections):
            self._open += 1
            await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        await self.done
        return time.perf_counter() - started


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=4)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body")
    parser.add_argument("--unique-header", help="a header sent with a value unique to each request")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    load = _Load(args)
    elapsed = asyncio.run(load.run(args.connections, args.duration))
    ordered = sorted(load.latencies)
    summary = {
        "requests": len(ordered),
        "seconds": min(elapsed, args.duration),
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "non_2xx": load.non_2xx,
        "errors": load.errors,
    }
    sys.stdout.write(json.dumps(summary) + "\n")


if __name__ == "__main__":
    main()
