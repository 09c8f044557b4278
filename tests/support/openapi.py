"""FusionAuth's OpenAPI document, kept in the repository (tests/data/README.md says where it comes from).

The one place that reads it: the kickstart tests of both the deployment files and the dev server import from here.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
OPENAPI_VERSION = "1.69.0"
OPENAPI_PATH = ROOT / "tests" / "data" / f"fusionauth-openapi-{OPENAPI_VERSION}.yaml"
OPENAPI_SHA256 = "49feaa451db767e214d1aafc57eaa0fe72d142aa013a4b29b48bb1b76e6f28f9"


def openapi_digest() -> str:
    return hashlib.sha256(OPENAPI_PATH.read_bytes()).hexdigest()


@cache
def openapi() -> dict[str, Any]:
    """The parsed document (cached: the C loader reads the 590 KB file in about a second)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with OPENAPI_PATH.open(encoding="utf-8") as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=loader)  # noqa: S506 - a safe loader
    return document
