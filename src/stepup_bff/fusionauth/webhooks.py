"""FusionAuth's signed webhooks: verifying one before anything reads it, and what an event says (docs/fusionauth.md
§14).

FusionAuth signs each webhook request with a Key Master key and sends `X-FusionAuth-Signature-JWT`: a JWS whose one
claim, `request_body_sha256`, is the standard base64 of SHA-256 over the raw body. The route receives nothing but
that (it is outside the browser's CSRF rules: FusionAuth sends no X-CSRF), so the signature is the whole of its
authentication, and is checked over the **raw** bytes before they are parsed:

- The JWS header's `kid` must be the one configured (`fusionauth.webhook_key_id`): a dedicated key. Never "any key
  in the JWKS", which also holds the token-signing keys, and never a kid that signed a token we accepted, even if
  configured so by mistake.
- The algorithm is the configured key's, not the token's choice: RS256 with the key's public half from FusionAuth's
  JWKS, or HS256 with `fusionauth.webhook_secret` when that key is an HMAC key (FusionAuth never publishes those).
- `request_body_sha256` is compared with the body's hash in constant time.

The JWS has no `exp`, `iat` or `jti`, so it does not stop a replay on its own: the route keeps each `event.id` it has
seen (a replay within that time is a duplicate), ignores events older than that, and every effect ends only sessions
signed in before the event, so a replayed event cannot end a session begun after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from jose import jws
from jose.exceptions import JOSEError

from ..auth.tokens import TokenVerifier, is_rs256_signing_key
from ..settings import FusionAuthSettings
from .client import FusionAuthClient

SIGNATURE_HEADER = "x-fusionauth-signature-jwt"
MAX_SIGNATURE = 8 * 1024  # a JWS over a 256-bit claim with a 4096-bit RSA signature is well under 1 KiB


class WebhookRefused(Exception):
    """Not a webhook FusionAuth signed with the configured key over this body. The message says which check failed
    (for the one log line), never the header or the body."""


class InvalidEvent(Exception):
    """Signed, but not an event this receiver can read (not JSON, no event, no id or type)."""


@dataclass(frozen=True)
class Event:
    """What a receiver reads of an event (docs/fusionauth.md §14): its id (FusionAuth's duplicate key), type, when it
    happened (epoch seconds), tenant, and the rest as FusionAuth sent it."""

    id: str
    type: str
    created_at: float | None
    tenant_id: str | None
    body: dict[str, Any]

    def string(self, *path: str) -> str | None:
        value: Any = self.body
        for name in path:
            value = value.get(name) if isinstance(value, dict) else None
        return value if isinstance(value, str) and value else None

    @property
    def user_id(self) -> str | None:
        """The user the event is about: `user.id`, or the revoke event's `userId`, or a user action's actionee (the
        example JSON spells it `actioneeId`, the field list `actioneeUserId`: both are read)."""
        return (
            self.string("user", "id")
            or self.string("userId")
            or self.string("actioneeUserId")
            or self.string("actioneeId")
        )


class WebhookVerifier:
    def __init__(self, settings: FusionAuthSettings, fusionauth: FusionAuthClient, tokens: TokenVerifier) -> None:
        self._key_id = settings.webhook_key_id
        self._secret = settings.webhook_secret
        self._fusionauth = fusionauth
        self._tokens = tokens

    async def verify(self, signature: str | None, body: bytes) -> None:
        """Return if `signature` is FusionAuth's, with the configured key, over exactly `body`; else WebhookRefused.
        FusionAuthError if the JWKS cannot be fetched (the route answers 503: we could not tell)."""
        if self._key_id is None:
            raise WebhookRefused("no webhook key is configured (fusionauth.webhook_key_id)")
        if not signature:
            raise WebhookRefused("no X-FusionAuth-Signature-JWT header")
        if len(signature) > MAX_SIGNATURE:
            raise WebhookRefused("the signature header is too long")
        try:
            header = jws.get_unverified_header(signature)
        except JOSEError as exc:
            raise WebhookRefused("the signature is not a JWS") from exc
        kid, algorithm = header.get("kid"), header.get("alg")
        if not isinstance(kid, str) or kid != self._key_id:
            raise WebhookRefused("signed with another key than fusionauth.webhook_key_id")
        if kid in self._tokens.token_kids:
            # A configuration mistake, not an attack: say so loudly, and still refuse.
            raise WebhookRefused("signed with the key that signs tokens; give webhooks a key of their own")
        expected = "HS256" if self._secret is not None else "RS256"
        if algorithm != expected:
            raise WebhookRefused(f"algorithm {algorithm!r} is not the webhook key's ({expected})")
        key: Any
        if self._secret is not None:
            key = self._secret.get_secret_value()
        else:
            key = await self._fusionauth.signing_key(kid)
            if key is None:
                raise WebhookRefused("the webhook key is not in FusionAuth's JWKS")
            if not is_rs256_signing_key(key):
                raise WebhookRefused("the webhook key is not an RS256 signing key")
        try:
            payload = jws.verify(signature, key, algorithms=[expected])
            claims = json.loads(payload)
        except (JOSEError, ValueError) as exc:
            raise WebhookRefused("bad signature") from exc
        claimed = claims.get("request_body_sha256") if isinstance(claims, dict) else None
        if not isinstance(claimed, str):
            raise WebhookRefused("the signature names no body hash")
        actual = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        # Constant time: the hash of a body the caller chose must not be learnable byte by byte.
        if not hmac.compare_digest(claimed.encode(), actual.encode()):
            raise WebhookRefused("the signature is over another body")


def parse_event(body: bytes) -> Event:
    """The event in a verified body; InvalidEvent if it is not one."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidEvent("the body is not JSON") from exc
    event = document.get("event") if isinstance(document, dict) else None
    if not isinstance(event, dict):
        raise InvalidEvent("the body holds no event")
    event_id, event_type = event.get("id"), event.get("type")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 64:
        raise InvalidEvent("the event has no id")
    if not isinstance(event_type, str) or not event_type or len(event_type) > 100:
        raise InvalidEvent("the event has no type")
    created = event.get("createInstant")  # epoch milliseconds (docs/fusionauth.md §14)
    tenant = event.get("tenantId")
    return Event(
        id=event_id,
        type=event_type,
        created_at=created / 1000 if isinstance(created, int | float) and not isinstance(created, bool) else None,
        tenant_id=tenant if isinstance(tenant, str) else None,
        body=event,
    )
