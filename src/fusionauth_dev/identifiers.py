"""Random identifiers and codes, shaped like the ones FusionAuth hands out.

Everything comes from ``secrets``: these values are bearer credentials (codes, refresh tokens, twoFactorIds).
"""

from __future__ import annotations

import base64
import secrets
import string
import uuid

_METHOD_ID_ALPHABET = string.ascii_uppercase + string.digits
# FusionAuth's recovery codes look like "QJD73-L6GR5" in its documentation (docs/fusionauth.md §8): two groups of five
# upper-case letters and digits.
_RECOVERY_CODE_ALPHABET = string.ascii_uppercase + string.digits
RECOVERY_CODES = 10  # as many as the documentation's example answer lists


def new_uuid() -> str:
    return str(uuid.uuid4())


def two_factor_id() -> str:
    # FusionAuth's twoFactorIds are 43-character URL-safe strings (docs/fusionauth.md §2 example).
    return secrets.token_urlsafe(32)


def method_id() -> str:
    # Method ids look like "BD5R" in FusionAuth's documentation examples (docs/fusionauth.md §2): four upper-case
    # letters or digits.
    return "".join(secrets.choice(_METHOD_ID_ALPHABET) for _ in range(4))


def one_time_code(length: int = 6) -> str:
    # The tenant default generator is {length: 6, type: randomDigits} (docs/fusionauth.md §3).
    return "".join(secrets.choice(string.digits) for _ in range(length))


def authenticator_secret() -> str:
    """A TOTP secret as the Generate a Secret API answers it: base64 of 20 random bytes (160 bits, RFC 4226's
    recommended length for HMAC-SHA1)."""
    return base64.b64encode(secrets.token_bytes(20)).decode("ascii")


def recovery_code() -> str:
    first, second = ("".join(secrets.choice(_RECOVERY_CODE_ALPHABET) for _ in range(5)) for _ in range(2))
    return f"{first}-{second}"


def opaque_token() -> str:
    """Refresh tokens, authorization codes, trust tokens, SSO session ids."""
    return secrets.token_urlsafe(40)


def client_secret() -> str:
    return secrets.token_urlsafe(32)


def key_id_hint() -> str:
    # A fresh `kid` per process: a restarted dev server has new key material, and a relying party that cached the
    # old JWKS must see an unknown `kid` (and refetch) rather than a known one that no longer verifies.
    return secrets.token_hex(5)
