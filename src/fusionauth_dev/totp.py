"""RFC 6238 TOTP over the base64 secrets FusionAuth stores (docs/fusionauth.md §8: "key = base64decode(secret)")."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any

import pyotp

# FusionAuth's authenticator settings are always HmacSHA1/6/30 today (docs/fusionauth.md §2); the others are accepted
# because the tenant schema allows them.
_DIGESTS: dict[str, Callable[..., Any]] = {
    "HmacSHA1": hashlib.sha1,
    "HmacSHA256": hashlib.sha256,
    "HmacSHA512": hashlib.sha512,
}
DEFAULT_ALGORITHM = "HmacSHA1"
DEFAULT_CODE_LENGTH = 6
DEFAULT_TIME_STEP = 30
# One step each way, so a phone whose clock is a little off still works.
ALLOWED_DRIFT_STEPS = 1


class InvalidSecret(ValueError):
    pass


def decode_secret(secret_b64: str) -> bytes:
    padded = secret_b64 + "=" * (-len(secret_b64) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the authenticator secret is not base64") from exc
    if not raw:
        raise InvalidSecret("the authenticator secret is empty")
    return raw


def secret_base32(secret_b64: str) -> str:
    """The same secret in base32, the form QR codes and authenticator apps use."""
    return base64.b32encode(decode_secret(secret_b64)).decode("ascii")


def base64_of_base32(secret_b32: str) -> str:
    """A base32 secret (``secretBase32Encoded``, what authenticator apps show) in the base64 form FusionAuth stores."""
    cleaned = secret_b32.replace(" ", "").upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError) as exc:
        raise InvalidSecret("the authenticator secret is not base32") from exc
    if not raw:
        raise InvalidSecret("the authenticator secret is empty")
    return base64.b64encode(raw).decode("ascii")


def _totp(secret_b64: str, algorithm: str, digits: int, step: int) -> pyotp.TOTP:
    digest = _DIGESTS.get(algorithm, hashlib.sha1)
    return pyotp.TOTP(secret_base32(secret_b64), digits=digits, interval=step, digest=digest)


def code_at(
    secret_b64: str,
    at: float,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    digits: int = DEFAULT_CODE_LENGTH,
    step: int = DEFAULT_TIME_STEP,
) -> str:
    return str(_totp(secret_b64, algorithm, digits, step).at(int(at)))


def seconds_left(at: float, step: int = DEFAULT_TIME_STEP) -> int:
    return step - int(at) % step


def verify(
    secret_b64: str,
    code: str,
    at: float,
    *,
    algorithm: str = DEFAULT_ALGORITHM,
    digits: int = DEFAULT_CODE_LENGTH,
    step: int = DEFAULT_TIME_STEP,
) -> bool:
    if not code.isdigit() or len(code) != digits:
        return False
    try:
        totp = _totp(secret_b64, algorithm, digits, step)
    except InvalidSecret:
        return False
    return bool(totp.verify(code, for_time=int(at), valid_window=ALLOWED_DRIFT_STEPS))
