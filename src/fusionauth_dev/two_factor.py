"""Two-factor challenges: start, send, and checking a code (docs/fusionauth.md §2-§4, §10).

A challenge (``twoFactorId``) lives ``twoFactorIdTimeToLiveInSeconds`` (300 s by default). It is completed by any of:

* the code returned by the Start API, or supplied to it ([inferred] valid for the challenge's lifetime);
* the latest code sent by the Send API, for ``twoFactorOneTimeCodeIdTimeToLiveInSeconds`` (60 s by default); each
  send replaces every earlier code, the start code included (docs/fusionauth.md §2, §3);
* the current code of one of the user's authenticator methods, one 30-second step of drift allowed each way;
* one of the user's recovery codes (enrolment.py), each once.
"""

from __future__ import annotations

import hmac
from typing import Any

from fusionauth_dev import enrolment, identifiers, totp
from fusionauth_dev.directory import Directory, OneTimeCode, Tenant, TwoFactorChallenge, User
from fusionauth_dev.errors import NotFound, ValidationFailed
from fusionauth_dev.login import public_method
from fusionauth_dev.templates import render

# The message methods FusionAuth can deliver a code by, and the user field it goes to.
_DESTINATIONS = {"email": "email", "sms": "mobilePhone"}


def start(
    directory: Directory,
    *,
    user: User,
    application_id: str | None,
    origin: str,
    state: Any = None,
    trust_challenge: str | None = None,
    code: str | None = None,
    context: dict[str, Any] | None = None,
) -> TwoFactorChallenge:
    tenant = directory.tenant_of(user.tenant_id)
    expires_at = directory.now() + tenant.two_factor_id_ttl
    challenge = TwoFactorChallenge(
        id=identifiers.two_factor_id(),
        user_id=user.id,
        tenant_id=tenant.id,
        application_id=application_id,
        expires_at=expires_at,
        state=state,
        trust_challenge=trust_challenge,
        origin=origin,
        context=dict(context or {}),
    )
    if origin == "start":
        # Only the Start API hands out a code of its own (a 242 from the Login API does not).
        value = code or identifiers.one_time_code(tenant.one_time_code_length)
        challenge.codes.append(OneTimeCode(value=value, expires_at=expires_at, method_id=None))
    directory.challenges[challenge.id] = challenge
    return challenge


def live_challenge(directory: Directory, two_factor_id: str) -> TwoFactorChallenge:
    """A challenge the Two-Factor APIs may act on; the hosted login page's own challenges are not among them."""
    challenge = directory.live_challenge(two_factor_id)
    if challenge is None or challenge.origin == "oauth" or challenge.user_id not in directory.users:
        raise NotFound()
    return challenge


def methods_json(user: User) -> list[dict[str, Any]]:
    return [public_method(method) for method in user.methods]


def send(directory: Directory, challenge: TwoFactorChallenge, method_id: str) -> str:
    """Deliver a fresh code by an email/sms method to the dev outbox; returns the code (for the hosted page)."""
    user = directory.users[challenge.user_id]
    method = user.method(method_id)
    if method is None:
        raise ValidationFailed.field("methodId", "invalid", f"The methodId [{method_id}] is not a method of this user.")
    kind = str(method.get("method"))
    if kind not in _DESTINATIONS:
        raise ValidationFailed.field(
            "methodId", "invalid", f"A code cannot be sent to the [{kind}] method; the user reads it from the app."
        )
    tenant = directory.tenant_of(user.tenant_id)
    # FusionAuth renders the tenant's message template for the method; without the method enabled there is nothing to
    # send with. (A real Community-edition FusionAuth also answers 400 here: email/SMS MFA needs a licence.)
    if not tenant.mfa_method_enabled(kind):
        raise ValidationFailed.general(
            "[DisabledMultiFactorMethod]", f"The [{kind}] multi-factor method is not enabled for this tenant."
        )
    destination = str(method.get(_DESTINATIONS[kind]) or "")
    code = identifiers.one_time_code(tenant.one_time_code_length)
    # Each send invalidates every earlier code for this twoFactorId, including the Start API's.
    challenge.codes = [
        OneTimeCode(value=code, expires_at=directory.now() + tenant.one_time_code_ttl, method_id=method_id)
    ]
    rendered = _render_message(directory, tenant, challenge, user, kind, code)
    directory.outbox.deliver(kind, destination, code, **rendered)
    return code


def _render_message(
    directory: Directory, tenant: Tenant, challenge: TwoFactorChallenge, user: User, kind: str, code: str
) -> dict[str, str]:
    """The tenant's email template for the method, rendered with FusionAuth's two-factor variables
    (templates.py); nothing where the method has no email template (SMS message templates are not modelled)."""
    template = directory.email_templates.get(tenant.mfa_template_id(kind) or "") if kind == "email" else None
    if template is None:
        return {}
    variables: dict[str, Any] = {"code": code, "user": user.to_json(), "tenant": tenant.data}
    application = directory.applications.get(challenge.application_id or "")
    if application is not None:
        variables["application"] = application.data
    if challenge.state is not None:
        # [inferred] FusionAuth's docs list code, user, tenant and application for this template; the Start API's
        # state is offered too, as it is to other templates (Forgot Password, Passwordless), so that a template
        # written for either case (kickstart/email-mfa.json: `[#if (state...)??]`) can be seen at work here.
        variables["state"] = challenge.state
    return {
        "subject": render(str(template.get("defaultSubject", "")), variables),
        "text": render(str(template.get("defaultTextTemplate", "")), variables),
        "html": render(str(template.get("defaultHtmlTemplate", "")), variables),
    }


def match_code(directory: Directory, challenge: TwoFactorChallenge, user: User, code: str) -> tuple[bool, str | None]:
    """(matched, method id used: None for the Start API's code and for a recovery code, which is used up)."""
    now = directory.now()
    code = code.strip()
    for candidate in challenge.codes:
        if candidate.expires_at > now and hmac.compare_digest(candidate.value.encode(), code.encode()):
            return True, candidate.method_id
    for method in user.methods:
        if method.get("method") != "authenticator":
            continue
        secret = user.secrets.get(str(method["id"]))
        settings = method.get("authenticator") or {}
        if secret and totp.verify(
            secret,
            code,
            now,
            algorithm=str(settings.get("algorithm", totp.DEFAULT_ALGORITHM)),
            digits=int(settings.get("codeLength", totp.DEFAULT_CODE_LENGTH)),
            step=int(settings.get("timeStep", totp.DEFAULT_TIME_STEP)),
        ):
            return True, str(method["id"])
    if enrolment.use_recovery_code(user, code):
        return True, None
    return False, None


def mark_last_used(user: User, method_id: str | None) -> None:
    if method_id is None:
        return
    for method in user.methods:
        method["lastUsed"] = method.get("id") == method_id
