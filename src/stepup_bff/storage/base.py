"""The storage interfaces: `Store` for server-side state (storage.url), `TelegramStore` for durable records
(database.url). Values in the store are strings (callers store JSON); every key may expire.

Key names. Callers pass logical keys (`session:{<user id>}:<hash>`); each implementation puts `storage.prefix`
(default `stepup:`) in front, so several deployments can share one Redis and callers never see it.

Hash tags (Redis Cluster). Cluster places a key by the text between its first `{` and the next `}` when there is
one, and a script or MULTI may only touch keys that land in one slot. So every key that belongs to a user carries
the user id as its hash tag, built by `user_key()`: `<kind>:{<user id>}[:<more>]`. Whatever later touches several
keys of one user at once (a per-user session index that ends every session of a user in one script, a failure
counter and its lock together) then runs unchanged on Cluster. A key that belongs to no user needs no tag. Every
operation below touches exactly one key, except the bounded indexes' (`index_*`), whose few keys on Redis share the
index key's hash tag.

Bounded indexes. A small map of members to values under one key, ranked, with at most `limit` members: the per-user
index of sessions (auth/sessions.py) is one, so that every session of a user can be found and ended without the
session ids, which only the cookies hold. A put that takes an index past its limit removes the lowest-ranked members
in the same atomic step and returns them, so the caller can end what they named; nothing can grow without bound.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from ..settings import ConfigError

Backend = Literal["sqlite", "redis", "postgresql"]
# Told the backend and the operation (a method name of the store) whenever a backend fails one: the app counts
# them (ops/metrics.py, stepup_bff_store_errors_total).
ErrorHook = Callable[[Backend, str], None]


def user_key(kind: str, user_id: str, *parts: str) -> str:
    """A key of `user_id`'s, with the user id as its hash tag (see the module docstring)."""
    return ":".join([kind, "{" + user_id + "}", *parts])


class StorageConfigError(ConfigError):
    """storage.url or database.url cannot be used at start-up (unreachable, refused, no such database). The message
    names the setting and the reason, never a password; the CLI prints it and exits 2, like any configuration
    error."""


_URL_DELIMITERS = re.compile(r"[:/?#\[\]@]")


def hide_password(text: str, url: str) -> str:
    """`text` (a message about `url`, a library's included) with every piece of the URL's password replaced.

    A password with a character that should have been percent-encoded (`/`, `@`, `%`, as generated ones have)
    makes libpq and redis-py read part of it as a host, port or database name, or quote the whole URL in their
    error, so neither the parsed parts nor the library's text can be trusted to leave it out. Everything between
    `://` and the last `@` that follows a `:` may be password: it, its decoded form and each piece between URL
    delimiters are replaced wherever they occur. This may hide more than the password, never less."""
    _, scheme, rest = url.partition("://")
    at = rest.rfind("@")
    if not scheme or at < 0:
        return text  # no credentials in the URL
    user, colon, password = rest[:at].partition(":")
    secret = password if colon else user
    pieces = {secret, unquote(secret)}
    pieces.update(piece for whole in tuple(pieces) for piece in _URL_DELIMITERS.split(whole))
    for piece in sorted(filter(None, pieces), key=len, reverse=True):
        text = text.replace(piece, "***")
    return text


class Store(Protocol):
    """Every method raises `errors.StoreUnavailable` when the store cannot be reached or fails: callers never see
    a library's own exceptions, and a failure is never mistaken for "absent"."""

    async def get(self, key: str) -> str | None:
        """The live value, or None if absent or expired."""
        ...

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Store `value` for `ttl` seconds, replacing any previous value."""
        ...

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Insert only if absent (or expired); True if this call inserted. Redis: SET NX PX."""
        ...

    async def replace(self, key: str, value: str, ttl: float) -> bool:
        """Update only if present (and live); True if updated. Redis: SET XX PX. Never re-creates a deleted key."""
        ...

    async def compare_and_set(self, key: str, expected: str, value: str, ttl: float) -> bool:
        """Update only if the live value is exactly `expected`; True if updated. A write based on a read (a session's
        last-seen time) then never undoes another write made since (a refresh's new tokens), nor re-creates a deleted
        key. Redis: a script (GET, compare, SET PX)."""
        ...

    async def pop(self, key: str) -> str | None:
        """Get and delete in one step, so of two concurrent callers only one gets the value. Redis: GETDEL."""
        ...

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: float) -> int:
        """Add one and return the new count; the first increment starts a `ttl`-second window (fixed window). The
        count and its expiry are written together, so no crash can leave a counter that never expires."""
        ...

    async def ttl(self, key: str) -> float | None:
        """Seconds until `key` expires, or None if absent."""
        ...

    async def ping(self) -> None:
        """Return if the store can serve reads and writes now; raise `errors.StoreUnavailable` if not. Readiness
        (GET /readyz) calls it."""
        ...

    async def index_put(self, key: str, member: str, value: str, *, rank: float, ttl: float, limit: int) -> list[str]:
        """Set `member` of the bounded index `key` to `value`, ranked `rank` (higher ranks newer). The index lives at
        least `ttl` seconds after this put (a put never shortens it). If it then holds more than `limit` members, the
        lowest-ranked others (never `member` itself; ties by member) are removed in the same atomic step and
        returned, so that the caller can end what they named."""
        ...

    async def index_remove(self, key: str, member: str) -> None:
        """Remove `member` from the index `key` (nothing if it is not there)."""
        ...

    async def index_items(self, key: str) -> dict[str, str]:
        """Every member of the index `key` with its value (empty if there is none)."""
        ...


@dataclass(frozen=True)
class Telegram:
    id: str
    user_id: str
    recipient: str
    message: str
    created_at: float
    status: str = "queued"


class TelegramStore(Protocol):
    """Durable records. Every method raises `errors.DatabaseUnavailable` when the database fails; a method that
    returns has committed what it wrote."""

    async def create_telegram(
        self, telegram: Telegram, idempotency_key: str | None, *, activity: EventBuilder | None = None
    ) -> tuple[Telegram, bool]:
        """Store durably; with an idempotency key already used by this user, return the original and False. A
        unique index decides, so concurrent requests on different machines still store one telegram. With
        `activity`, the telegram's user's next activity event is appended in the same transaction when (and only
        when) the telegram is new: both are committed, or neither is."""
        ...

    async def list_telegrams(self, user_id: str, limit: int) -> list[Telegram]:
        """The user's telegrams, newest first."""
        ...

    async def find_telegram(self, user_id: str, idempotency_key: str) -> Telegram | None:
        """The telegram this user already created with this idempotency key, if any."""
        ...

    async def ping(self) -> None:
        """Return if the database answers; raise `errors.DatabaseUnavailable` if not."""
        ...


@dataclass(frozen=True)
class ActivityEvent:
    """One event of a user's security activity log, as stored: the `seq`-th of that user's, chained to the one before
    by `prev_hash` (activity/chain.py says how `hash` is computed). `detail` is a JSON object of short, fixed-vocabulary
    fields; no field ever holds a secret."""

    user_id: str
    seq: int  # 1, 2, 3... per user, without gaps
    at_ms: int  # milliseconds since the epoch
    kind: str
    outcome: str
    detail: str
    address: str | None
    agent: str | None
    prev_hash: str
    hash: str


# The `prev_hash` of a user's first event.
GENESIS = "0" * 64

_ROWS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    kind: attrgetter(*(field.name for field in fields(kind))) for kind in (Telegram, ActivityEvent)
}


def as_row(record: Telegram | ActivityEvent) -> tuple[Any, ...]:
    """A record's fields in the dataclass's order, the columns' order of its INSERT: `dataclasses.astuple` would
    deep-copy every value (strings and numbers need no copy), and it showed in the group commit's profile."""
    return _ROWS[type(record)](record)


# Given the next sequence number and the hash of the event before it (GENESIS for the first),
# the complete event to store. Called inside the database's transaction, so it must not do I/O.
EventBuilder = Callable[[int, str], ActivityEvent]


class ActivityStore(Protocol):
    """The append-only security activity log. Every method raises `errors.DatabaseUnavailable` when the database
    fails; `append_activity` has committed when it returns."""

    async def append_activity(self, user_id: str, build: EventBuilder) -> ActivityEvent:
        """Append the user's next event. Concurrent appends for one user (on any replica) never fork the chain: the
        database's unique (user_id, seq) decides, and the loser builds again on the new head."""
        ...

    async def list_activity(self, user_id: str, before_seq: int | None, limit: int) -> list[ActivityEvent]:
        """The user's events, newest first; only those with seq < before_seq when it is given."""
        ...

    def activity_chains(self) -> AsyncIterator[list[ActivityEvent]]:
        """Every user's whole chain, oldest event first, one list per user (for `stepup-bff audit verify`)."""
        ...


class Database(TelegramStore, ActivityStore, Protocol):
    """database.url: the durable records."""
