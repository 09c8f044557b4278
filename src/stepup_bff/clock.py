"""Time as a dependency, so expiry is tested by moving a clock instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


def iso(timestamp: float) -> str:
    """Seconds since the epoch as the API states a moment: ISO 8601 in UTC, with milliseconds."""
    # Milliseconds, not seconds: a countdown in the browser must not end before the server's window does.
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
