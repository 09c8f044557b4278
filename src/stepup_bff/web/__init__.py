"""Web plumbing every request passes through: CSRF checks, cookies (signing, queued Set-Cookie headers) and the
security headers."""
