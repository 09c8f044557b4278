"""Security review of the log redaction (ops/logs.py): the secrets native sign-in added must be removed too.

`redact()` is the last line of defence: it runs over every finished line, tracebacks included, whichever logger,
message or exception carried a secret. Native sign-in brought two new ones: the password in the Login API's body
and the opaque refresh token in its answer (`refreshToken`, where the token endpoint's is `refresh_token`). No line
writes either today; this keeps it so if one ever does (a body in a debug line, a model's repr in a traceback).
(Its pending-sign-in cookie is JSON signed by itsdangerous, `eyJ...`, and was already caught as a JWT shape.)
"""

from __future__ import annotations

import pytest

from stepup_bff.ops.logs import redact


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('{"loginId":"alice@example.com","password":"correct horse battery staple"}', "horse battery"),
        ("{'loginId': 'alice@example.com', 'password': 'hunter2'}", "hunter2"),
        ('{"token":"x","refreshToken":"ze9fi6Y9pQeS3Jm1n2b","refreshTokenId":"rt-1"}', "ze9fi6Y9pQeS3Jm1n2b"),
    ],
)
def test_native_sign_in_secrets_are_redacted(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted, redacted
    assert "[redacted]" in redacted


def test_what_is_not_secret_is_kept() -> None:
    line = 'native sign-in failed: login=3f2a9c1b0d4e status=404 {"loginId":"alice@example.com"}'
    assert redact(line) == line
    assert redact("password authentication failed for user stepup") == (
        "password authentication failed for user stepup"
    )
