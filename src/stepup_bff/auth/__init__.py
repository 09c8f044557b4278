"""Sessions and sign-in: the signed session cookie and its server-side record, the hosted-page sign-in (PKCE, state,
nonce) and token verification."""
