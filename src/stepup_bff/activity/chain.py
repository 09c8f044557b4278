"""The hash chain of a user's activity log, and its verification.

Each event's hash is SHA-256 over a canonical JSON form of everything stored about it, its place (`seq`) and the hash
of the user's event before it (`prev_hash`; `GENESIS` for the first). So an edited event no longer matches its hash,
a deleted one leaves a gap in `seq` and a broken link, and events moved about break their links. What a chain cannot
show by itself is its own *newest* events removed (or a whole chain removed): the remaining chain is still
consistent. `stepup-bff audit verify --heads` prints every chain's head (seq and hash) so that an operator can keep
them elsewhere and compare; the README says so.

The chain is not keyed: someone able to rewrite the table can also recompute hashes. It makes tampering visible
against an earlier copy of the heads, and detects accidental damage and clumsy edits on its own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..storage import GENESIS, ActivityEvent

VERSION = 1


def event_hash(event: ActivityEvent) -> str:
    """The hash `event` must carry, computed from its content and `prev_hash` (its own `hash` field is ignored)."""
    canonical = {
        "v": VERSION,
        "user_id": event.user_id,
        "seq": event.seq,
        "at_ms": event.at_ms,
        "kind": event.kind,
        "outcome": event.outcome,
        "detail": event.detail,
        "address": event.address,
        "agent": event.agent,
        "prev_hash": event.prev_hash,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    user_id: str
    seq: int  # where the chain breaks: the event found there (or, for missing events, the first one missing)
    problem: str

    def __str__(self) -> str:
        return f"user {self.user_id}, event {self.seq}: {self.problem}"


def verify_chain(events: Sequence[ActivityEvent]) -> list[ChainBreak]:
    """Every break in one user's chain, oldest first (an empty list: intact). `events` is ordered by seq."""
    breaks: list[ChainBreak] = []
    expected_seq, expected_prev = 1, GENESIS
    for event in events:
        if event.seq > expected_seq:
            missing = f"{expected_seq}" if event.seq == expected_seq + 1 else f"{expected_seq} to {event.seq - 1}"
            breaks.append(ChainBreak(event.user_id, expected_seq, f"event(s) {missing} are missing (deleted)"))
        elif event.seq < expected_seq:
            breaks.append(ChainBreak(event.user_id, event.seq, "is out of order (events were moved)"))
        if event.prev_hash != expected_prev:
            breaks.append(
                ChainBreak(event.user_id, event.seq, "does not follow the event before it (deleted or reordered)")
            )
        if event_hash(event) != event.hash:
            breaks.append(ChainBreak(event.user_id, event.seq, "does not match its hash (edited)"))
        expected_seq, expected_prev = event.seq + 1, event.hash
    return breaks
