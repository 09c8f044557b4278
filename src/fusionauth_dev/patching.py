"""FusionAuth's PATCH semantics for the stored JSON objects.

* ``application/json`` (the default and what kickstart sends): objects merge recursively and arrays are
  **appended** to, which is how ``PATCH /api/user/{id}`` adds a second-factor method (docs/fusionauth.md §8: "PATCH
  appends to
  the array").
* ``application/merge-patch+json`` (RFC 7396, kickstart ``contentType`` since 1.40.1): arrays are replaced and
  ``null`` removes a member.

JSON Patch (RFC 6902) is not implemented; such a request is rejected with a 400.
"""

from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _merged(
    target: dict[str, Any], patch: dict[str, Any], *, append_arrays: bool, null_removes: bool
) -> dict[str, Any]:
    # One recursive walk for the three policies; an object merges into an object, and into {} where there was none.
    result = copy.deepcopy(target)
    for name, value in patch.items():
        current = result.get(name)
        if value is None and null_removes:
            result.pop(name, None)
        elif isinstance(value, dict):
            base = current if isinstance(current, dict) else {}
            result[name] = _merged(base, value, append_arrays=append_arrays, null_removes=null_removes)
        elif append_arrays and isinstance(current, list) and isinstance(value, list):
            result[name] = current + copy.deepcopy(value)
        else:
            result[name] = copy.deepcopy(value)
    return result


def legacy_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """PATCH with ``application/json``: arrays are appended to (docs/fusionauth.md §8)."""
    return _merged(target, patch, append_arrays=True, null_removes=False)


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7396: arrays are replaced and ``null`` removes a member."""
    return _merged(target, patch, append_arrays=False, null_removes=True)


def deep_defaults(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` wins; nested objects are filled from ``defaults`` (how FusionAuth fills unset configuration)."""
    return _merged(defaults, given, append_arrays=False, null_removes=False)
