"""The benchmark's anchor: a bare FastAPI route answering a small JSON body, served by uvicorn exactly as
`stepup-bff serve` serves the BFF (the same options from `stepup_bff.cli.server_options`, the same kind of socket,
one worker, no access log), in a process of its own.

    python bench/bare.py PORT
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from stepup_bff.cli import server_options
from stepup_bff.ops.listen import bind_tcp


def main() -> None:
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.Server(uvicorn.Config(app, **server_options())).run(sockets=[bind_tcp("127.0.0.1", int(sys.argv[1]))])


if __name__ == "__main__":
    main()
