"""What a respx-mocked FusionAuth needs: signing keys, a JWKS, discovery, and tokens with FusionAuth's claims."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jws, jwt

FA_URL = "http://fusionauth.test:9011"
FA_PUBLIC_URL = "http://localhost:9011"
ISSUER = "http://localhost:9011"
APPLICATION_ID = "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
USER_ID = "00000000-0000-0000-0000-00000000a11c"
OTHER_USER_ID = "00000000-0000-0000-0000-00000000b0b0"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_pem: bytes
    public_jwk: dict[str, Any]


@cache
def signing_key(kid: str = "key-1") -> SigningKey:
    """An RSA key per kid, generated once per test run (2048-bit generation costs ~50 ms)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_jwk = jwk.construct(public_pem, "RS256").to_dict()
    public_jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    return SigningKey(kid, private_pem, public_jwk)


def jwks(*kids: str) -> dict[str, Any]:
    return {"keys": [signing_key(kid).public_jwk for kid in kids or ("key-1",)]}


def discovery(issuer: str = ISSUER) -> dict[str, Any]:
    # Real FusionAuth names its own host in these URLs; the BFF must use only their paths.
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{FA_PUBLIC_URL}/oauth2/authorize",
        "token_endpoint": f"{FA_PUBLIC_URL}/oauth2/token",
        "userinfo_endpoint": f"{FA_PUBLIC_URL}/oauth2/userinfo",
        "end_session_endpoint": f"{FA_PUBLIC_URL}/oauth2/logout",
        "jwks_uri": f"{FA_PUBLIC_URL}/.well-known/jwks.json",
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def _at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


@dataclass
class TokenFactory:
    """Mints FusionAuth-shaped tokens; every field can be bent to test a failure."""

    now: float = field(default_factory=time.time)
    kid: str = "key-1"
    issuer: str = ISSUER
    audience: str = APPLICATION_ID
    # Every refresh token minted, with its user: what a refresh grant needs to answer for it.
    refresh_subjects: dict[str, str] = field(default_factory=dict)

    def refresh_token(self, sub: str = USER_ID) -> str:
        token = "refresh-" + uuid.uuid4().hex
        self.refresh_subjects[token] = sub
        return token

    def refreshed(self, refresh_token: str, *, now: float, rotate: bool = False) -> dict[str, Any] | None:
        """The token endpoint's answer to a refresh grant at `now` (None: an unknown refresh token); `rotate` is the
        one-time-use policy, whose answer carries a new refresh token and id."""
        sub = self.refresh_subjects.get(refresh_token)
        if sub is None:
            return None
        minted = dataclasses.replace(self, now=now)
        answer: dict[str, Any] = {
            "access_token": minted.access_token(sub=sub),
            "expires_in": 3600,
            "scope": "openid offline_access profile email",
            "token_type": "Bearer",
            "userId": sub,
        }
        if rotate:
            del self.refresh_subjects[refresh_token]
            answer |= {"refresh_token": self.refresh_token(sub), "refresh_token_id": str(uuid.uuid4())}
        return answer

    def _claims(self, sub: str, ttl: int, extra: dict[str, Any]) -> dict[str, Any]:
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": int(self.now),
            "exp": int(self.now) + ttl,
            "jti": str(uuid.uuid4()),
            "auth_time": int(self.now),
            "authenticationType": "PASSWORD",
            "tid": "d7d09513-a3f5-401c-9685-34ab6c552453",
        }
        claims.update(extra)
        return claims

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, algorithm: str = "RS256") -> str:
        key = signing_key(kid or self.kid)
        return jwt.encode(claims, key.private_pem.decode(), algorithm=algorithm, headers={"kid": kid or self.kid})

    def access_token(self, sub: str = USER_ID, ttl: int = 3600, **extra: Any) -> str:
        extra.setdefault("applicationId", APPLICATION_ID)
        extra.setdefault("roles", ["user"])
        extra.setdefault("scope", "openid offline_access profile email")
        return self.sign(self._claims(sub, ttl, extra))

    def id_token(self, *, nonce: str, access_token: str, sub: str = USER_ID, ttl: int = 3600, **extra: Any) -> str:
        extra.setdefault("email", "alice@example.com")
        extra.setdefault("email_verified", True)
        extra.setdefault("name", "Alice Example")
        claims = self._claims(sub, ttl, {"nonce": nonce, "at_hash": _at_hash(access_token), **extra})
        return self.sign(claims)

    def token_response(self, *, nonce: str, sub: str = USER_ID, **id_extra: Any) -> dict[str, Any]:
        access = self.access_token(sub=sub)
        return {
            "access_token": access,
            "id_token": self.id_token(nonce=nonce, access_token=access, sub=sub, **id_extra),
            "refresh_token": self.refresh_token(sub),
            "refresh_token_id": str(uuid.uuid4()),
            "expires_in": 3600,
            "scope": "openid offline_access profile email",
            "token_type": "Bearer",
            "userId": sub,
        }


WEBHOOK_KID = "webhook-signing"


def webhook_event(event_type: str, *, created_at: float, user_id: str = USER_ID, **fields: Any) -> dict[str, Any]:
    """A FusionAuth event envelope (docs/fusionauth.md §14): `createInstant` in epoch milliseconds."""
    event: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "createInstant": int(created_at * 1000),
        "tenantId": "d7d09513-a3f5-401c-9685-34ab6c552453",
        "info": {"ipAddress": "203.0.113.9"},
        "user": {"id": user_id, "active": event_type != "user.deactivate", "email": "alice@example.com"},
    }
    event.update(fields)
    return {"event": event}


def sign_webhook(body: bytes, *, kid: str = WEBHOOK_KID, algorithm: str = "RS256", key: Any = None) -> str:
    """X-FusionAuth-Signature-JWT as FusionAuth makes it: a JWS whose one claim is the standard base64 of SHA-256 over
    the raw body, signed by the webhook's Key Master key (an RSA key of this module's by default)."""
    claim = base64.b64encode(hashlib.sha256(body).digest()).decode()
    secret = key if key is not None else signing_key(kid).private_pem.decode()
    return jws.sign({"request_body_sha256": claim}, secret, algorithm=algorithm, headers={"kid": kid, "typ": "JWT"})
