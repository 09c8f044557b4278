"""Refreshing a session's tokens at FusionAuth: the `Refresher` SessionManager calls when an access token is due.

The new access token is verified exactly like the first one (auth/tokens.py: signature from the JWKS, issuer,
audience, expiry) and must name the session's user. Tokens that do not verify are not stored: the session ends as for
a refused refresh, and the refresh token FusionAuth just issued with them is revoked, since no session will hold it.
"""

from __future__ import annotations

import logging

from ..fusionauth.client import FusionAuthClient, RefreshRejected
from .sessions import Tokens
from .tokens import InvalidToken, TokenVerifier

logger = logging.getLogger(__name__)


class TokenRefresher:
    def __init__(self, fusionauth: FusionAuthClient, verifier: TokenVerifier) -> None:
        self._fusionauth = fusionauth
        self._verifier = verifier

    async def refresh(self, user_id: str, tokens: Tokens) -> Tokens:
        if tokens.refresh_token is None:
            raise RefreshRejected("the session holds no refresh token")
        answer = await self._fusionauth.refresh_tokens(tokens.refresh_token)
        # Under the one-time-use policy FusionAuth answers with a new refresh token (and id); otherwise the one we
        # presented stays valid and is kept.
        refresh_token = answer.refresh_token or tokens.refresh_token
        refresh_token_id = answer.refresh_token_id or tokens.refresh_token_id
        try:
            claims = await self._verifier.verify(answer.access_token)
            if claims.get("sub") != user_id:
                raise InvalidToken("the refreshed token belongs to someone else")
        except InvalidToken as exc:
            logger.warning("refreshed token rejected: %s", exc)
            if refresh_token_id != tokens.refresh_token_id:
                await self.revoke(refresh_token_id)
            raise RefreshRejected(f"the refreshed token did not verify: {exc}") from exc
        return Tokens(answer.access_token, refresh_token, refresh_token_id, expires_at=float(claims["exp"]))

    async def revoke(self, refresh_token_id: str | None) -> None:
        await self._fusionauth.revoke_refresh_token_quietly(refresh_token_id)
