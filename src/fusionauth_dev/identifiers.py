"""Random identifiers and codes, shaped like the ones FusionAuth hands out.

Everything comes from ``secrets``: these values are bearer credentials (codes, refresh tokens, twoFactorIds).
"""

from __future__ import annotations

import secrets
import string
import uuid

_METHOD_ID_ALPHABET = string.ascii_uppercase + string.digits


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


# Upper-case letters and digits without the ones people misread (0/O, 1/I/L): a recovery code is copied by hand.
_RECOVERY_ALPHABET = "".join(ch for ch in string.ascii_uppercase + string.digits if ch not in "0O1IL")
RECOVERY_CODE_COUNT = 10


def recovery_codes() -> list[str]:
    """A user's single-use recovery codes, made when their first second-factor method is enabled. FusionAuth's are
    ten codes of ten letters and digits in two groups ("8JNNF-GB76W"); [inferred] their alphabet."""
    return [
        "-".join("".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(5)) for _ in range(2))
        for _ in range(RECOVERY_CODE_COUNT)
    ]


def opaque_token() -> str:
    """Refresh tokens, authorization codes, trust tokens, SSO session ids."""
    return secrets.token_urlsafe(40)


def client_secret() -> str:
    return secrets.token_urlsafe(32)


def key_id_hint() -> str:
    # A fresh `kid` per process: a restarted dev server has new key material, and a relying party that cached the
    # old JWKS must see an unknown `kid` (and refetch) rather than a known one that no longer verifies.
    return secrets.token_hex(5)
