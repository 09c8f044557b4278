"""Liveness and readiness for load balancers and container healthchecks.

GET /healthz (liveness) answers without touching FusionAuth or the store, so a FusionAuth outage does not get
healthy BFF instances restarted. GET /readyz (readiness) asks the store and FusionAuth (ops/readiness.py), so a
load balancer sends no traffic to an instance that could not serve it. `stepup-bff doctor` checks the configuration.
"""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import ReadinessDep
from ..errors import NotReady
from .schemas import ReadyOut

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A dependency does not answer; `checks` says which."}})
async def readyz(readiness: ReadinessDep) -> ReadyOut:
    checks = await readiness.check()
    if any(verdict != "ok" for verdict in checks.values()):
        raise NotReady(checks)
    return ReadyOut(status="ready", checks=checks)
