"""Web plumbing every request passes through: the edge rules (body size, repeated headers and parameters, CSRF
checks, media type), HEAD and Allow, cookies (signing, queued Set-Cookie headers) and the security headers."""
