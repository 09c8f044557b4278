"""Time source for everything that expires (codes, twoFactorIds, tokens, sessions).

Injected rather than read from ``time.time()`` so tests can expire a challenge by moving a clock instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that only moves when told to; for tests (this package's and the BFF's)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, now: float) -> None:
        self._now = now


def epoch_millis(seconds: float) -> int:
    """FusionAuth's JSON "instants" are epoch milliseconds."""
    return int(seconds * 1000)
