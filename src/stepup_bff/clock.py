"""Time as a dependency, so expiry is tested by moving a clock instead of sleeping."""

from __future__ import annotations

import functools
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


# A session's moments (signed in, expires, idle expiry, step-up until) are the same on each of its requests until it is
# touched, and the SPA asks for them on every page: formatted once each.
@functools.lru_cache(maxsize=4096)
def iso(timestamp: float) -> str:
    """Seconds since the epoch as the API states a moment: ISO 8601 in UTC, with milliseconds."""
    # Milliseconds, not seconds: a countdown in the browser must not end before the server's window does.
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
