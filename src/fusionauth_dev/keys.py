"""Signing keys (Key Master) and the JWKS they publish.

RSA material is generated lazily: generating a 2048-bit key costs ~0.1 s, and most keys a test creates are never
used to sign anything.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from fusionauth_dev import identifiers

SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@dataclass
class SigningKey:
    id: str
    name: str
    algorithm: str = "RS256"
    length: int = 2048
    kid: str = field(default_factory=identifiers.key_id_hint)
    insert_instant: int = 0
    _private: rsa.RSAPrivateKey | None = field(default=None, repr=False)
    _pems: dict[str, str] = field(default_factory=dict, repr=False)

    def private_key(self) -> rsa.RSAPrivateKey:
        if self._private is None:
            self._private = rsa.generate_private_key(public_exponent=65537, key_size=self.length)
        return self._private

    def private_pem(self) -> str:
        if "private" not in self._pems:
            self._pems["private"] = (
                self.private_key()
                .private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                .decode("ascii")
            )
        return self._pems["private"]

    def public_pem(self) -> str:
        if "public" not in self._pems:
            self._pems["public"] = (
                self.private_key()
                .public_key()
                .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                .decode("ascii")
            )
        return self._pems["public"]

    def jwk(self) -> dict[str, str]:
        numbers = self.private_key().public_key().public_numbers()
        return {
            "alg": self.algorithm,
            "e": _b64url_uint(numbers.e),
            "kid": self.kid,
            "kty": "RSA",
            "n": _b64url_uint(numbers.n),
            "use": "sig",
        }

    def to_json(self) -> dict[str, Any]:
        # The Key API never returns the private key of a generated key pair.
        return {
            "algorithm": self.algorithm,
            "hasPrivateKey": True,
            "id": self.id,
            "insertInstant": self.insert_instant,
            "kid": self.kid,
            "length": self.length,
            "name": self.name,
            "publicKey": self.public_pem(),
            "type": "RSA",
        }
