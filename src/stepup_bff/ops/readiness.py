"""Readiness (GET /readyz): can this instance serve sign-ins and step-ups right now?

A list of named probes, each an `async () -> None` that raises when its dependency does not answer; adding a
dependency is one line in `readiness_probes`. They run concurrently, each within PROBE_TIMEOUT, so one hanging
dependency cannot make the probe itself hang. FusionAuth's verdict is reused for a few seconds: load balancers
probe every instance every few seconds, and FusionAuth must not feel that.

Liveness (GET /healthz) is different on purpose: it touches nothing, so a FusionAuth outage takes instances out of
the load balancer's rotation (readiness) without getting them restarted (liveness).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..clock import Clock
from ..errors import FusionAuthError
from ..fusionauth.client import FusionAuthClient
from ..storage import Store, TelegramStore

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 2.0  # seconds; configure the load balancer's probe timeout above this
FUSIONAUTH_CACHE = 5.0  # seconds a FusionAuth verdict is reused
OK = "ok"


@dataclass(frozen=True)
class Probe:
    name: str
    check: Callable[[], Awaitable[None]]
    cache_for: float = 0.0  # seconds; 0 asks every time


def readiness_probes(store: Store, database: TelegramStore, fusionauth: FusionAuthClient) -> list[Probe]:
    return [
        Probe("store", store.ping),
        Probe("database", database.ping),
        Probe("fusionauth", fusionauth.ping, cache_for=FUSIONAUTH_CACHE),
    ]


class Readiness:
    def __init__(self, probes: Sequence[Probe], clock: Clock, *, timeout: float = PROBE_TIMEOUT) -> None:
        self._probes = list(probes)
        self._clock = clock
        self._timeout = timeout
        self._cached: dict[str, tuple[float, str]] = {}
        self._locks = {probe.name: asyncio.Lock() for probe in self._probes}
        self._last: dict[str, str] = {}

    async def check(self) -> dict[str, str]:
        """Each probe's verdict: "ok", or a short code saying how it failed (never the error's text, since the
        answer is public)."""
        verdicts = await asyncio.gather(*(self._verdict(probe) for probe in self._probes))
        return dict(zip((probe.name for probe in self._probes), verdicts, strict=True))

    async def _verdict(self, probe: Probe) -> str:
        if probe.cache_for <= 0:
            return await self._run(probe)
        async with self._locks[probe.name]:  # a burst of probes makes one call
            cached = self._cached.get(probe.name)
            if cached is not None and self._clock.now() - cached[0] < probe.cache_for:
                return cached[1]
            verdict = await self._run(probe)
            self._cached[probe.name] = (self._clock.now(), verdict)
            return verdict

    async def _run(self, probe: Probe) -> str:
        error: BaseException | None = None
        try:
            async with asyncio.timeout(self._timeout):
                await probe.check()
            verdict = OK
        except TimeoutError as exc:
            verdict, error = "timeout", exc
        except FusionAuthError as exc:
            verdict, error = exc.error_code, exc
        except Exception as exc:  # any failure of the dependency's client library means "not answering"
            verdict, error = "unavailable", exc
        if self._last.get(probe.name, OK) != verdict:
            # Logged when the verdict changes, not on every probe, so an outage is two lines rather than thousands.
            if verdict == OK:
                logger.info("readiness: %s answers again", probe.name)
            else:
                logger.warning("readiness: %s failed: %s (%r)", probe.name, verdict, error)
        self._last[probe.name] = verdict
        return verdict
