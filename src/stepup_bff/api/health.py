"""Liveness for load balancers and container healthchecks: answers without touching FusionAuth or the store,
so a FusionAuth outage does not get healthy BFF instances killed (`stepup-bff doctor` checks the dependencies)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
