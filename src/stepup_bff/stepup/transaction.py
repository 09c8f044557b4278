"""Transaction binding: what a bound step-up confirms, and how a request is matched to it.

OWASP's Transaction Authorization cheat sheet (and PSD2's "dynamic linking"): the person sees what they confirm, and
what they confirmed is exactly what runs. A bound action's route describes each request as a `Transaction`: the
fields that matter (for a telegram: recipient and message) and a summary for people. The BFF keeps the SHA-256 of a
canonical form of (action, user, fields) server-side when it refuses the request, binds the step-up to it, and at
execution recomputes it from the request in hand: any other field value is another transaction.

The canonical form is JSON with sorted keys, no whitespace and the strings exactly as validated (no Unicode
normalisation: two strings that render alike but differ are different telegrams, and must not share a confirmation).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

VERSION = 1


@dataclass(frozen=True)
class Transaction:
    fields: Mapping[str, str]  # the request's fields that matter, exactly as they will be executed
    summary: str  # for people: built server-side, rendered with textContent only
    # An idempotent repeat of a request that already ran (same Idempotency-Key, same fields): nothing new will run,
    # so it needs no step-up and consumes none.
    already_done: bool = False

    def digest(self, action: str, user_id: str) -> str:
        canonical = {"v": VERSION, "action": action, "user": user_id, "fields": dict(self.fields)}
        encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def displayable(text: str) -> str:
    """`text` safe to show as what someone confirms: whitespace runs (newlines too) become one space, and control and
    format characters (bidi overrides such as U+202E, zero-width joiners) become U+FFFD, so that they cannot make the
    summary read differently from the fields it stands for."""
    shown = []
    for char in " ".join(text.split()):
        shown.append("\ufffd" if unicodedata.category(char) in ("Cc", "Cf", "Co", "Cs", "Cn") else char)
    return "".join(shown)


def excerpt(text: str, limit: int) -> str:
    """The start of `text`, at most `limit` characters, cut at a word where one is near, with "…" when cut."""
    shown = displayable(text)
    if len(shown) <= limit:
        return shown
    cut = shown[:limit]
    space = cut.rfind(" ")
    if space >= limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"
