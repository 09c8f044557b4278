"""ID and access token verification (with fusionauth/webhooks.py, the only modules that import python-jose).

Every check a relying party must make (OIDC Core 3.1.3.7, RFC 9700 2.1): signature by a key from FusionAuth's
JWKS, the algorithm from our allow-list (never the token's choice), exact issuer, audience = our client id,
expiry and issue time against our clock, and the nonce bound to this browser's login.
"""

from __future__ import annotations

import hmac
from typing import Any

from jose import jwt
from jose.exceptions import JOSEError
from pydantic import BaseModel, ConfigDict, ValidationError

from ..clock import Clock
from ..fusionauth.client import FusionAuthClient, display_name

# RS256 only: FusionAuth publishes only asymmetric keys in its JWKS, and an allow-list is what stops "alg": "none"
# and the HS256-signed-with-the-public-key confusion attack.
ALLOWED_ALGORITHMS = ("RS256",)
LEEWAY = 60  # seconds of clock skew tolerated between us and FusionAuth


def is_rs256_signing_key(key: Any) -> bool:
    """A JWK this verifier will use: RSA, for signatures, RS256 or unspecified (`doctor` applies the same test)."""
    return (
        isinstance(key, dict)
        and key.get("kty") == "RSA"
        and key.get("alg", "RS256") == "RS256"
        and key.get("use", "sig") == "sig"
    )


def auth_time_of(claims: dict[str, Any]) -> float | None:
    """The `auth_time` claim of verified claims (docs/fusionauth.md §6.6: the sign-in itself, unchanged by refresh),
    or None when it is absent or not a number."""
    value = claims.get("auth_time")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class InvalidToken(Exception):
    """A token failed verification; the message says which check (never the token)."""


class IdClaims(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sub: str
    email: str | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    preferred_username: str | None = None
    auth_time: int | None = None

    @property
    def display_name(self) -> str:
        return display_name(
            full=self.name,
            first=self.given_name,
            last=self.family_name,
            username=self.preferred_username,
            email=self.email,
            fallback=self.sub,
        )


class TokenVerifier:
    def __init__(self, fusionauth: FusionAuthClient, audience: str, clock: Clock) -> None:
        self._fusionauth = fusionauth
        self._audience = audience
        self._clock = clock
        # The kids that signed tokens we accepted. The webhook verifier refuses each of them even if configured: the
        # token-signing key signs whatever FusionAuth hands out, so it cannot also vouch for an event.
        self.token_kids: set[str] = set()

    async def verify(self, token: str, *, nonce: str | None = None, access_token: str | None = None) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise InvalidToken("not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} is not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("no key id")
        key = await self._fusionauth.signing_key(kid)
        if key is None:
            raise InvalidToken("unknown key id")
        if not is_rs256_signing_key(key):
            raise InvalidToken("the key is not an RS256 signing key")
        issuer = (await self._fusionauth.discovery()).issuer
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALLOWED_ALGORITHMS),
                audience=self._audience,
                issuer=issuer,
                access_token=access_token,
                # Time checks below use our injectable clock and leeway instead of the library's wall clock. So exp is
                # not among the required claims: python-jose's require_exp turns its own exp check back on (wall
                # clock, no leeway); _check_times requires it. python-jose skips the audience and issuer checks when
                # the claim is absent: require them. (Its require_iat only checks that iat is a number.)
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require_iat": True,
                    "require_aud": True,
                    "require_iss": True,
                    "require_sub": True,
                },
            )
        except JOSEError as exc:
            raise InvalidToken(f"verification failed: {exc}") from exc
        self._check_times(claims)
        self.token_kids.add(kid)
        if nonce is not None:
            token_nonce = claims.get("nonce")
            if not isinstance(token_nonce, str) or not hmac.compare_digest(token_nonce, nonce):
                raise InvalidToken("nonce mismatch")
        return claims

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock.now()
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not isinstance(exp, int | float) or exp + LEEWAY <= now:
            raise InvalidToken("expired")
        if isinstance(iat, int | float) and iat - LEEWAY > now:
            raise InvalidToken("issued in the future")
        if isinstance(nbf, int | float) and nbf - LEEWAY > now:
            raise InvalidToken("not yet valid")

    async def verify_login(self, *, id_token: str, access_token: str, nonce: str) -> IdClaims:
        id_claims = await self.verify(id_token, nonce=nonce, access_token=access_token)
        access_claims = await self.verify(access_token)
        if access_claims.get("sub") != id_claims.get("sub"):
            raise InvalidToken("the access token belongs to someone else")
        try:
            return IdClaims.model_validate(id_claims)
        except ValidationError as exc:
            raise InvalidToken("claims are malformed") from exc
