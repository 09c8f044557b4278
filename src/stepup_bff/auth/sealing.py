"""Session records at rest: AES-256-GCM under a key that only the browser's cookie can produce.

The record holds FusionAuth's access and refresh tokens. Whoever reads the store (a Redis dump, a replica, the SQLite
file, a backup) must not be able to use them, so they are sealed:

- key: HKDF-SHA256 of the session id. The session id travels only in the signed cookie; the store knows the
  record by a SHA-256 hash of it, from which the key cannot be recovered. So the store alone yields nothing usable.
- associated data: the record's key. A sealed value copied under another session's key (or another user's) fails
  to open, so records cannot be swapped between sessions by whoever can write to the store.
- format: `v1.` + base64url(96-bit random nonce || ciphertext || 128-bit tag). The version names the whole scheme
  (KDF, cipher, layout); a later one can be added beside it and `open_sealed` will tell them apart.

A fresh random nonce for every seal: a key serves one session, which is rewritten at most once a minute for its
lifetime (sessions.TOUCH_INTERVAL), far below AES-GCM's limits for random nonces.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
_INFO = b"stepup-bff/session-record/v1"  # binds derived keys to this one purpose
_NONCE = 12


class Unsealable(Exception):
    """The value was not sealed for this session id and key, was altered, or has an unknown format."""


def _key(session_id: str) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(session_id.encode())


def seal(session_id: str, associated: str, plaintext: bytes) -> str:
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_key(session_id)).encrypt(nonce, plaintext, associated.encode())
    return f"{VERSION}." + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def open_sealed(session_id: str, associated: str, value: str) -> bytes:
    version, _, body = value.partition(".")
    if version != VERSION:
        raise Unsealable(f"unknown format {version[:8]!r}")
    try:
        raw = base64.urlsafe_b64decode(body.encode("ascii"))
        return AESGCM(_key(session_id)).decrypt(raw[:_NONCE], raw[_NONCE:], associated.encode())
    except (InvalidTag, ValueError, binascii.Error) as exc:  # wrong key or key name, altered, truncated, not base64
        raise Unsealable("does not open with this session id and key") from exc
