"""Password-guessing limits for native sign-in: failures per login id and per client address, in the store.

A fixed window per key, exact under concurrency: each attempt takes a slot *before* FusionAuth is asked (INCR is
atomic in every store), and gives it back once it is known not to have been a failure. So a burst of parallel
guesses cannot all pass a check made before the first of them is answered, and successes never count: a hundred
people signing in from behind one office NAT do not lock each other out.

Keys hold hashes only: a login id is an email address, and neither it nor an IP address should become a key name in
the store (or in a copy of it).
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata

from ..stepup.challenge import retry_after
from ..storage import Store


def normalise_login_id(login_id: str) -> str:
    """How FusionAuth matches login ids (case-insensitively), so `Alice@Example.com ` and `alice@example.com` share
    one budget."""
    return unicodedata.normalize("NFKC", login_id).strip().casefold()


def address_bucket(address: str | None) -> str:
    """What a client address's failures count under: an IPv4 address itself, an IPv6 address its /64.

    Whoever has IPv6 has a /64 at least (one LAN, one subscriber) and picks source addresses in it freely: counted
    per address, a guesser would move to a fresh one for every attempt and never reach the per-address limit. An
    IPv4 client that a dual-stack listener or proxy writes as `::ffff:a.b.c.d` is the same client as `a.b.c.d`.
    FusionAuth is still told the exact address (`ipAddress`); this is only the key of the budget."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a test client's name): itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"  # int() drops any %zone as well
    return str(ip)


def digest(kind: str, value: str) -> str:
    return hashlib.sha256(f"stepup-bff/{kind}:{value}".encode()).hexdigest()


class FailureBudget:
    """At most `limit` failures per key within `window` seconds of its first attempt."""

    def __init__(self, store: Store, name: str, limit: int, window: float) -> None:
        self._store = store
        self._name = name
        self._limit = limit
        self._window = window

    def _taken(self, key: str) -> str:
        return f"signin:{self._name}:{key}"

    def _returned(self, key: str) -> str:
        return f"signin:{self._name}-returned:{key}"

    async def take(self, key: str) -> bool:
        """Take a slot for one attempt; False (and nothing taken) when the budget is spent."""
        taken = await self._store.incr(self._taken(key), ttl=self._window)
        # Read after the increment: a give-back racing with us can only be missed, which errs on the strict side.
        returned = int(await self._store.get(self._returned(key)) or 0)
        if taken - returned <= self._limit:
            return True
        await self.give_back(key)  # a refused attempt is not a failure either
        return False

    async def give_back(self, key: str) -> None:
        """The attempt did not fail (right password, or FusionAuth gave no verdict): return its slot."""
        remaining = await self._store.ttl(self._taken(key))
        if remaining:
            # Dies with the window it belongs to.
            await self._store.incr(self._returned(key), ttl=remaining)

    async def retry_after(self, key: str) -> int:
        return await retry_after(self._store, self._taken(key))
