"""Second factors a user adds and removes (docs/fusionauth.md §8): the Generate a Secret, Enable Multi-Factor and
Disable Multi-Factor APIs, and the recovery codes the first method brings.

* ``GET /api/two-factor/secret`` hands out a fresh secret (base64, and base32 for QR codes); nothing is stored: the
  caller holds it until it enables a method with it.
* ``POST /api/user/two-factor/{userId}`` adds an authenticator method once a current code of that secret shows that the
  person's app has it (421 otherwise). The first method also brings ten single-use recovery codes, answered this once
  and kept only as hashes, as FusionAuth does since 1.68.
* ``DELETE /api/user/two-factor/{userId}`` removes one method given a current code of that method, or every method
  given a recovery code. With no method left the recovery codes go too [inferred: the docs say only that a method
  added after a recovery code removed them all brings a new set].

Recovery codes are accepted wherever a second factor is (``/api/two-factor/login``, the hosted page), once each
(``use_recovery_code``). Email and SMS methods are not enabled here: FusionAuth wants a code it sent for the purpose
(``POST /api/two-factor/send``, the enable/disable variant), which this server does not implement.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from fusionauth_dev import identifiers, totp
from fusionauth_dev.directory import Directory, OneTimeCode, Tenant, User
from fusionauth_dev.errors import InvalidCode, ValidationFailed

# What the tenant's authenticator settings default to (docs/fusionauth.md §8: HmacSHA1, 6 digits, 30 s).
_AUTHENTICATOR_DEFAULTS = (
    ("algorithm", totp.DEFAULT_ALGORITHM),
    ("codeLength", totp.DEFAULT_CODE_LENGTH),
    ("timeStep", totp.DEFAULT_TIME_STEP),
)
_NAME_MAX = 256  # FusionAuth's limit for a method's display name (since 1.68)


def generate_secret() -> dict[str, str]:
    secret = identifiers.authenticator_secret()
    return {"secret": secret, "secretBase32Encoded": totp.secret_base32(secret)}


def _hash(code: str) -> str:
    # [inferred] Recovery codes are compared without regard to case or surrounding spaces.
    return hashlib.sha256(code.strip().upper().encode()).hexdigest()


def use_recovery_code(user: User, code: str) -> bool:
    """Whether `code` is one of the user's unused recovery codes; if so, it is used up."""
    wanted = _hash(code)
    for stored in user.recovery_codes:
        if hmac.compare_digest(stored, wanted):
            user.recovery_codes.discard(stored)
            return True
    return False


def _authenticator_settings(tenant: Tenant) -> dict[str, Any]:
    configured = tenant.data.get("multiFactorConfiguration", {}).get("authenticator", {})
    return {name: configured.get(name, default) for name, default in _AUTHENTICATOR_DEFAULTS}


def _secret(secret: str | None, secret_base32: str | None) -> str:
    """The method's secret in base64, from `secret` or `secretBase32Encoded` (one of them is required)."""
    if secret is not None:
        try:
            totp.decode_secret(secret)
        except totp.InvalidSecret as exc:
            raise ValidationFailed.field("secret", "invalid", "The secret must be base64.") from exc
        return secret
    if secret_base32 is None:
        raise ValidationFailed.field("secret", "blank", "An authenticator method needs its secret.")
    try:
        return totp.base64_of_base32(secret_base32)
    except totp.InvalidSecret as exc:
        raise ValidationFailed.field("secretBase32Encoded", "invalid", "The secret must be base32.") from exc


def enable(
    directory: Directory,
    user: User,
    *,
    method: str | None,
    code: str | None,
    secret: str | None = None,
    secret_base32: str | None = None,
    name: str | None = None,
    two_factor_id: str | None = None,
) -> dict[str, Any] | None:
    """Add a method (the request's fields: `secretBase32Encoded` is `secret_base32`); the answer's body: recovery
    codes for the first method (and a login code with `twoFactorId`), None (an empty 200) otherwise."""
    if method is None:
        raise ValidationFailed.field("method", "blank", "You must specify the method.")
    if method not in ("authenticator", "email", "sms"):
        raise ValidationFailed.field("method", "invalid", "The method must be authenticator, email or sms.")
    if code is None:
        raise ValidationFailed.field("code", "blank", "You must specify the code.")
    tenant = directory.tenant_of(user.tenant_id)
    if not tenant.mfa_method_enabled(method):
        # A real Community-edition FusionAuth also answers 400 for email and SMS: they need a licence.
        raise ValidationFailed.general(
            "[DisabledMultiFactorMethod]", f"The [{method}] multi-factor method is not enabled for this tenant."
        )
    if method != "authenticator":
        raise ValidationFailed.general("[NotImplemented]", "The development server enables authenticator methods only.")
    if name is not None and len(name) > _NAME_MAX:
        raise ValidationFailed.field("name", "tooLong", f"The name may have at most {_NAME_MAX} characters.")
    secret = _secret(secret, secret_base32)
    settings = _authenticator_settings(tenant)
    if not totp.verify(
        secret,
        code.strip(),
        directory.now(),
        algorithm=str(settings["algorithm"]),
        digits=int(settings["codeLength"]),
        step=int(settings["timeStep"]),
    ):
        raise InvalidCode()
    first = not user.methods
    taken = {str(existing["id"]) for existing in user.methods}
    method_id = identifiers.method_id()
    while method_id in taken:
        method_id = identifiers.method_id()
    added: dict[str, Any] = {"id": method_id, "method": "authenticator", "authenticator": settings, "lastUsed": False}
    if name is not None:
        added["name"] = name
    user.data.setdefault("twoFactor", {}).setdefault("methods", []).append(added)
    user.secrets[method_id] = secret
    user.data["lastUpdateInstant"] = directory.now_millis()
    payload: dict[str, Any] = {}
    if first:
        codes = [identifiers.recovery_code() for _ in range(identifiers.RECOVERY_CODES)]
        user.recovery_codes = {_hash(value) for value in codes}
        payload["recoveryCodes"] = codes
    login_code = _login_code(directory, user, two_factor_id)
    if login_code is not None:
        payload["code"] = login_code
    return payload or None


def _login_code(directory: Directory, user: User, two_factor_id: str | None) -> str | None:
    """With the `twoFactorId` of a 242 that asked the user to configure a method: a code that completes that login
    (docs/fusionauth.md §5)."""
    if two_factor_id is None:
        return None
    challenge = directory.live_challenge(two_factor_id)
    if challenge is None or challenge.origin != "login" or challenge.user_id != user.id:
        raise ValidationFailed.field("twoFactorId", "invalid", "The twoFactorId is invalid or expired.")
    value = identifiers.one_time_code(directory.tenant_of(user.tenant_id).one_time_code_length)
    challenge.codes.append(OneTimeCode(value=value, expires_at=challenge.expires_at, method_id=None))
    return value


def disable(directory: Directory, user: User, *, method_id: str | None, code: str | None) -> None:
    """Remove the method `method_id` with a current code of it, or every method with a recovery code."""
    if method_id is None:
        raise ValidationFailed.field("methodId", "blank", "You must specify the methodId.")
    if code is None:
        raise ValidationFailed.field("code", "blank", "You must specify the code.")
    method = user.method(method_id)
    if method is None:
        raise ValidationFailed.field("methodId", "invalid", f"The methodId [{method_id}] is not a method of this user.")
    if use_recovery_code(user, code):
        _remove(directory, user, {str(existing["id"]) for existing in user.methods})
        return
    if not _code_of(directory, user, method, code):
        raise InvalidCode()
    _remove(directory, user, {method_id})


def _code_of(directory: Directory, user: User, method: dict[str, Any], code: str) -> bool:
    """Whether `code` is a current code of `method`. Only authenticators produce one here: an email or SMS method's
    code would come from the disable variant of the Send API, which this server does not implement."""
    secret = user.secrets.get(str(method["id"]))
    if method.get("method") != "authenticator" or not secret:
        return False
    settings = method.get("authenticator") or {}
    return totp.verify(
        secret,
        code.strip(),
        directory.now(),
        algorithm=str(settings.get("algorithm", totp.DEFAULT_ALGORITHM)),
        digits=int(settings.get("codeLength", totp.DEFAULT_CODE_LENGTH)),
        step=int(settings.get("timeStep", totp.DEFAULT_TIME_STEP)),
    )


def _remove(directory: Directory, user: User, method_ids: set[str]) -> None:
    two_factor = user.data.setdefault("twoFactor", {})
    two_factor["methods"] = [method for method in user.methods if str(method["id"]) not in method_ids]
    for method_id in method_ids:
        user.secrets.pop(method_id, None)
    if not two_factor["methods"]:
        user.recovery_codes = set()
    user.data["lastUpdateInstant"] = directory.now_millis()
