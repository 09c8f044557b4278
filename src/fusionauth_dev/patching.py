"""FusionAuth's PATCH semantics for the stored JSON objects.

* ``application/json`` (the default and what kickstart sends): objects merge recursively and arrays are
  **appended** to, which is how ``PATCH /api/user/{id}`` adds a second-factor method (contract §8: "PATCH appends to
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


def legacy_merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(target)
    for name, value in patch.items():
        current = result.get(name)
        if isinstance(current, dict) and isinstance(value, dict):
            result[name] = legacy_merge(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            result[name] = current + copy.deepcopy(value)
        else:
            result[name] = copy.deepcopy(value)
    return result


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(target)
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        elif isinstance(value, dict):
            current = result.get(name)
            result[name] = merge_patch(current if isinstance(current, dict) else {}, value)
        else:
            result[name] = copy.deepcopy(value)
    return result


def deep_defaults(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` wins; nested objects are filled from ``defaults`` (how FusionAuth fills unset configuration)."""
    result = copy.deepcopy(defaults)
    for name, value in given.items():
        if isinstance(value, dict) and isinstance(result.get(name), dict):
            result[name] = deep_defaults(result[name], value)
        else:
            result[name] = copy.deepcopy(value)
    return result
