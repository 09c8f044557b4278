"""The configuration APIs kickstart uses (keys, API keys, tenants, applications, users, registrations, user actions,
email templates), as one route table shared by live HTTP calls and kickstart.

Every route declares the FusionAuth endpoint its API-key permission is checked against. ``dispatch`` is what
kickstart calls; the FastAPI routes call the same ``handle``, so whatever kickstart can do, a live call with the same
API key can do, and the other way round.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from fusionauth_dev import identifiers, totp
from fusionauth_dev.access import TENANT_HEADER, check_key_tenant, header_tenant, require_api_key
from fusionauth_dev.directory import (
    ApiKey,
    Application,
    Directory,
    Tenant,
    User,
    default_application_json,
    default_tenant_json,
)
from fusionauth_dev.errors import FusionAuthError, NotFound, Unauthorized, ValidationFailed
from fusionauth_dev.keys import SUPPORTED_ALGORITHMS, SigningKey
from fusionauth_dev.patching import JSON_PATCH, MERGE_PATCH, deep_defaults, legacy_merge, merge_patch

_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_GRANTS = frozenset(
    {"authorization_code", "implicit", "password", "client_credentials", "refresh_token", "device_code"}
)
_CLIENT_AUTH_POLICIES = ("Required", "NotRequired", "NotRequiredWhenUsingPKCE")
_PKCE_POLICIES = ("Required", "NotRequired", "NotRequiredWhenUsingClientAuthentication")
_LOGIN_POLICIES = ("Disabled", "Enabled", "Required", "ChallengeOnHighRisk", "ChallengeOnMediumRisk")
_MFA_METHODS = ("authenticator", "email", "sms")
_MIN_PASSWORD_LENGTH = 8  # FusionAuth's default passwordValidationRules.minLength


@dataclass
class Call:
    """One API call: who makes it, where, and with what."""

    directory: Directory
    api_key: ApiKey
    method: str
    object_id: str | None
    body: dict[str, Any]
    tenant_id: str | None = None
    content_type: str = "application/json"
    query: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Call], tuple[int, dict[str, Any] | None]]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    endpoint: str
    handler: Handler
    key_manager: bool = False

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{[^/]+\}", "(?P<id>[^/]+)", self.template) + "$")


class UnknownRequest(LookupError):
    """No route serves this method and path."""


# -- helpers ------------------------------------------------------------------------------------------------------


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed.field(name, "invalid", f"[{name}] must be an object.")
    return value


def _require_uuid(value: str, field: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise ValidationFailed.field(field, "invalid", f"[{value}] is not a valid UUID.") from exc


def _new_id(call: Call, field: str) -> str:
    return _require_uuid(call.object_id, field) if call.object_id else identifiers.new_uuid()


def _unused_id(call: Call, store: Mapping[str, Any], field: str, noun: str) -> str:
    """The id of an object being created (the URL's, or a new one); 400 when another object has it."""
    object_id = _new_id(call, field)
    if object_id in store:
        raise ValidationFailed.field(field, "duplicate", f"{noun} with the id [{object_id}] already exists.")
    return object_id


def _stamp(data: dict[str, Any], directory: Directory, *, created: bool) -> None:
    now = directory.now_millis()
    if created or "insertInstant" not in data:
        data["insertInstant"] = now
    data["lastUpdateInstant"] = now


def _patched(call: Call, current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if call.content_type.startswith(JSON_PATCH):
        raise ValidationFailed.general(
            "[NotImplemented]", "The development server implements PATCH with application/json and merge-patch only."
        )
    if call.content_type.startswith(MERGE_PATCH):
        return merge_patch(current, patch)
    return legacy_merge(current, patch)


def _written(
    call: Call,
    given: dict[str, Any],
    defaults: dict[str, Any],
    current: dict[str, Any] | None,
    check: Callable[[Directory, dict[str, Any]], None],
) -> dict[str, Any]:
    """The JSON a write asks for (``current`` is None when creating), checked by ``check`` and stamped.

    PATCH merges ``given`` into ``current``; POST and PUT send the whole object, its unset fields taking FusionAuth's
    defaults. The ids in ``defaults`` (``id``, an application's ``tenantId``) win over the body's: a write never moves
    an object.
    """
    if call.method == "PATCH" and current is not None:
        data = _patched(call, current, given)
    else:
        data = deep_defaults(defaults, given)
    data.update({name: defaults[name] for name in ("id", "tenantId") if name in defaults})
    check(call.directory, data)
    _stamp(data, call.directory, created=current is None)
    return data


def _existing(store: dict[str, Any], object_id: str | None) -> Any:
    if object_id is None or object_id not in store:
        raise NotFound()
    return store[object_id]


def _tenant_for_write(call: Call, given: str | None) -> Tenant:
    tenant_id = call.tenant_id or given or call.api_key.tenant_id or call.directory.default_tenant_id
    tenant = call.directory.tenants.get(str(tenant_id))
    if tenant is None:
        raise ValidationFailed.field("tenantId", "invalid", f"The tenant [{tenant_id}] does not exist.")
    check_key_tenant(call.api_key, tenant.id)
    return tenant


def _check_key_ids(directory: Directory, jwt_settings: dict[str, Any], prefix: str) -> None:
    for name in ("accessTokenKeyId", "idTokenKeyId"):
        key_id = jwt_settings.get(name)
        if key_id is not None and key_id not in directory.keys:
            raise ValidationFailed.field(f"{prefix}.{name}", "invalid", f"The key [{key_id}] does not exist.")


# -- keys ---------------------------------------------------------------------------------------------------------


def generate_key(call: Call) -> tuple[int, dict[str, Any] | None]:
    spec = _object(call.body, "key")
    key_id = _unused_id(call, call.directory.keys, "key.id", "A key")
    algorithm = str(spec.get("algorithm") or "")
    if not algorithm:
        raise ValidationFailed.field("key.algorithm", "blank", "You must specify the key algorithm.")
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValidationFailed.field(
            "key.algorithm", "invalid", f"The development server generates RSA keys only {SUPPORTED_ALGORITHMS}."
        )
    name = str(spec.get("name") or "")
    if not name:
        raise ValidationFailed.field("key.name", "blank", "You must specify a name for the key.")
    length = int(spec.get("length") or 2048)
    if length not in (2048, 3072, 4096):
        raise ValidationFailed.field("key.length", "invalid", "An RSA key is 2048, 3072 or 4096 bits long.")
    key = SigningKey(
        id=key_id, name=name, algorithm=algorithm, length=length, insert_instant=call.directory.now_millis()
    )
    # [inferred] The Key object's `kid` may be given (docs/fusionauth.md §14); else FusionAuth makes one up.
    kid = spec.get("kid")
    if kid is not None:
        if not isinstance(kid, str) or not kid.strip():
            raise ValidationFailed.field("key.kid", "invalid", "The kid must be a non-empty string.")
        if any(other.kid == kid for other in call.directory.keys.values()):
            raise ValidationFailed.field("key.kid", "duplicate", f"A key with the kid [{kid}] already exists.")
        key.kid = kid
    call.directory.keys[key_id] = key
    return 200, {"key": key.to_json()}


def retrieve_key(call: Call) -> tuple[int, dict[str, Any] | None]:
    key: SigningKey = _existing(call.directory.keys, call.object_id)
    return 200, {"key": key.to_json()}


# -- API keys -----------------------------------------------------------------------------------------------------


def _normalize_endpoints(raw: Any) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValidationFailed.field("apiKey.permissions.endpoints", "invalid", "Endpoints map a path to methods.")
    result: dict[str, list[str]] = {}
    for path, methods in raw.items():
        if not isinstance(methods, list) or not all(isinstance(m, str) and m.upper() in _HTTP_METHODS for m in methods):
            raise ValidationFailed.field(
                "apiKey.permissions.endpoints", "invalid", f"[{path}] must list HTTP methods {sorted(_HTTP_METHODS)}."
            )
        result[str(path)] = [m.upper() for m in methods]
    return result


def api_key_json(directory: Directory, key_id: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Validate and normalise an API key (shared with kickstart's ``apiKeys``)."""
    data = copy.deepcopy(spec)
    data["id"] = key_id
    data["key"] = str(spec.get("key") or identifiers.opaque_token())
    endpoints = _normalize_endpoints((spec.get("permissions") or {}).get("endpoints"))
    data["permissions"] = {"endpoints": endpoints}
    if spec.get("tenantId") is not None and spec["tenantId"] not in directory.tenants:
        raise ValidationFailed.field("apiKey.tenantId", "invalid", f"The tenant [{spec['tenantId']}] does not exist.")
    data["keyManager"] = bool(spec.get("keyManager", False))
    if any(existing.key == data["key"] for existing in directory.api_keys.values()):
        raise ValidationFailed.field("apiKey.key", "duplicate", "An API key with this value already exists.")
    data["insertInstant"] = data["lastUpdateInstant"] = directory.now_millis()
    return data


def create_api_key(call: Call) -> tuple[int, dict[str, Any] | None]:
    spec = _object(call.body, "apiKey")
    key_id = _unused_id(call, call.directory.api_keys, "apiKey.id", "An API key")
    data = api_key_json(call.directory, key_id, spec)
    new_key = ApiKey(id=key_id, key=data["key"], data=data)
    # "An API key can only be created with equal or lesser authority" (API Key API docs).
    creator = call.api_key.endpoints
    if creator is not None:
        wanted = new_key.endpoints
        if wanted is None or any(not methods <= creator.get(path, frozenset()) for path, methods in wanted.items()):
            raise Unauthorized()
    if call.api_key.tenant_id is not None and new_key.tenant_id != call.api_key.tenant_id:
        raise Unauthorized()
    call.directory.api_keys[key_id] = new_key
    return 200, {"apiKey": new_key.to_json()}


def retrieve_api_key(call: Call) -> tuple[int, dict[str, Any] | None]:
    api_key: ApiKey = _existing(call.directory.api_keys, call.object_id)
    return 200, {"apiKey": api_key.to_json()}


# -- tenants ------------------------------------------------------------------------------------------------------


def _validate_tenant(directory: Directory, data: dict[str, Any]) -> None:
    if not str(data.get("name") or ""):
        raise ValidationFailed.field("tenant.name", "blank", "You must specify a name for the tenant.")
    if not str(data.get("issuer") or ""):
        raise ValidationFailed.field("tenant.issuer", "blank", "You must specify an issuer.")
    _check_key_ids(directory, data.get("jwtConfiguration") or {}, "tenant.jwtConfiguration")
    mfa = data.get("multiFactorConfiguration") or {}
    policy = mfa.get("loginPolicy", "Enabled")
    if policy not in _LOGIN_POLICIES:
        raise ValidationFailed.field(
            "tenant.multiFactorConfiguration.loginPolicy", "invalid", f"[{policy}] is not valid."
        )
    for method in ("email", "sms"):
        settings = mfa.get(method) or {}
        if settings.get("enabled"):
            template_id = settings.get("templateId")
            field = f"tenant.multiFactorConfiguration.{method}.templateId"
            if not template_id:
                raise ValidationFailed.field(field, "blank", f"The {method} method needs a message template.")
            if method == "email" and template_id not in directory.email_templates:
                raise ValidationFailed.field(field, "invalid", f"The email template [{template_id}] does not exist.")
    action_id = (data.get("failedAuthenticationConfiguration") or {}).get("userActionId")
    if action_id is not None and action_id not in directory.user_actions:
        raise ValidationFailed.field(
            "tenant.failedAuthenticationConfiguration.userActionId",
            "invalid",
            f"The user action [{action_id}] does not exist.",
        )


def _tenant_defaults(directory: Directory, tenant_id: str) -> dict[str, Any]:
    return default_tenant_json(tenant_id, directory.default_signing_key_id)


def create_tenant(call: Call) -> tuple[int, dict[str, Any] | None]:
    tenant_id = _unused_id(call, call.directory.tenants, "tenant.id", "A tenant")
    defaults = _tenant_defaults(call.directory, tenant_id)
    tenant = Tenant(tenant_id, _written(call, _object(call.body, "tenant"), defaults, None, _validate_tenant))
    call.directory.tenants[tenant_id] = tenant
    return 200, {"tenant": copy.deepcopy(tenant.data)}


def update_tenant(call: Call) -> tuple[int, dict[str, Any] | None]:
    tenant: Tenant = _existing(call.directory.tenants, call.object_id)
    check_key_tenant(call.api_key, tenant.id)
    defaults = _tenant_defaults(call.directory, tenant.id)
    tenant.data = _written(call, _object(call.body, "tenant"), defaults, tenant.data, _validate_tenant)
    return 200, {"tenant": copy.deepcopy(tenant.data)}


def retrieve_tenant(call: Call) -> tuple[int, dict[str, Any] | None]:
    tenant: Tenant = _existing(call.directory.tenants, call.object_id)
    check_key_tenant(call.api_key, tenant.id)
    return 200, {"tenant": copy.deepcopy(tenant.data)}


# -- applications -------------------------------------------------------------------------------------------------


def _normalize_application(directory: Directory, data: dict[str, Any]) -> None:
    if not str(data.get("name") or ""):
        raise ValidationFailed.field("application.name", "blank", "You must specify a name for the application.")
    oauth = data.setdefault("oauthConfiguration", {})
    oauth["clientId"] = data["id"]
    if not oauth.get("clientSecret"):
        oauth["clientSecret"] = identifiers.client_secret()
    for name in ("authorizedRedirectURLs", "authorizedOriginURLs"):
        urls = oauth.get(name) or []
        if not isinstance(urls, list) or not all(isinstance(url, str) and url for url in urls):
            raise ValidationFailed.field(f"application.oauthConfiguration.{name}", "invalid", "A list of URLs.")
        # Keep the first of duplicates: a legacy PATCH appends, and a re-applied overlay must not double them.
        oauth[name] = list(dict.fromkeys(urls))
    grants = oauth.get("enabledGrants") or []
    unknown = [grant for grant in grants if grant not in _GRANTS]
    if unknown:
        raise ValidationFailed.field("application.oauthConfiguration.enabledGrants", "invalid", f"Unknown {unknown}.")
    oauth["enabledGrants"] = list(dict.fromkeys(grants))
    for name, allowed in (
        ("clientAuthenticationPolicy", _CLIENT_AUTH_POLICIES),
        ("proofKeyForCodeExchangePolicy", _PKCE_POLICIES),
    ):
        if oauth.get(name) not in allowed:
            raise ValidationFailed.field(f"application.oauthConfiguration.{name}", "invalid", f"One of {allowed}.")
    roles = []
    for role in data.get("roles") or []:
        if not isinstance(role, dict) or not role.get("name"):
            raise ValidationFailed.field("application.roles", "invalid", "Each role needs a name.")
        roles.append({"isDefault": False, "isSuperRole": False, **role, "id": role.get("id") or identifiers.new_uuid()})
    data["roles"] = roles
    _check_key_ids(directory, data.get("jwtConfiguration") or {}, "application.jwtConfiguration")


def create_application(call: Call) -> tuple[int, dict[str, Any] | None]:
    application_id = _unused_id(call, call.directory.applications, "application.id", "An application")
    given = _object(call.body, "application")
    tenant = _tenant_for_write(call, given.get("tenantId"))
    defaults = default_application_json(application_id, tenant.id)
    application = Application(application_id, _written(call, given, defaults, None, _normalize_application))
    call.directory.applications[application_id] = application
    return 200, {"application": copy.deepcopy(application.data)}


def update_application(call: Call) -> tuple[int, dict[str, Any] | None]:
    application: Application = _existing(call.directory.applications, call.object_id)
    check_key_tenant(call.api_key, application.tenant_id)
    given = _object(call.body, "application")
    defaults = default_application_json(application.id, application.tenant_id)
    application.data = _written(call, given, defaults, application.data, _normalize_application)
    return 200, {"application": copy.deepcopy(application.data)}


def retrieve_application(call: Call) -> tuple[int, dict[str, Any] | None]:
    if call.object_id is None:
        visible = [
            copy.deepcopy(app.data)
            for app in call.directory.applications.values()
            if call.api_key.tenant_id in (None, app.tenant_id)
        ]
        return 200, {"applications": visible}
    application: Application = _existing(call.directory.applications, call.object_id)
    check_key_tenant(call.api_key, application.tenant_id)
    return 200, {"application": copy.deepcopy(application.data)}


# -- users and registrations --------------------------------------------------------------------------------------


def _normalize_methods(directory: Directory, user: User, tenant: Tenant) -> None:
    """Give each second-factor method an id and move authenticator secrets out of the JSON."""
    methods = user.data.get("twoFactor", {}).get("methods") or []
    if not isinstance(methods, list):
        raise ValidationFailed.field("user.twoFactor.methods", "invalid", "A list of methods.")
    taken = {str(m["id"]) for m in methods if isinstance(m, dict) and m.get("id")}
    authenticator_defaults = {
        name: tenant.data.get("multiFactorConfiguration", {}).get("authenticator", {}).get(name, default)
        for name, default in (("algorithm", "HmacSHA1"), ("codeLength", 6), ("timeStep", 30))
    }
    for index, method in enumerate(methods):
        field = f"user.twoFactor.methods[{index}]"
        if not isinstance(method, dict) or method.get("method") not in _MFA_METHODS:
            raise ValidationFailed.field(f"{field}.method", "invalid", f"The method must be one of {_MFA_METHODS}.")
        if not method.get("id"):
            method_id = identifiers.method_id()
            while method_id in taken:
                method_id = identifiers.method_id()
            method["id"] = method_id
            taken.add(method_id)
        kind = method["method"]
        if kind == "authenticator":
            secret = method.pop("secret", None) or user.secrets.get(method["id"])
            if not secret:
                raise ValidationFailed.field(f"{field}.secret", "blank", "An authenticator method needs its secret.")
            try:
                totp.decode_secret(str(secret))
            except totp.InvalidSecret as exc:
                raise ValidationFailed.field(f"{field}.secret", "invalid", "The secret must be base64.") from exc
            user.secrets[method["id"]] = str(secret)
            method["authenticator"] = {**authenticator_defaults, **(method.get("authenticator") or {})}
        elif kind == "email" and not method.get("email"):
            raise ValidationFailed.field(f"{field}.email", "blank", "An email method needs an email address.")
        elif kind == "sms" and not method.get("mobilePhone"):
            raise ValidationFailed.field(f"{field}.mobilePhone", "blank", "An sms method needs a mobile phone number.")
    # Methods with a secret that was removed from the JSON no longer need it.
    live_ids = {str(m["id"]) for m in methods}
    user.secrets = {method_id: s for method_id, s in user.secrets.items() if method_id in live_ids}


def _apply_user_fields(directory: Directory, user: User, tenant: Tenant, *, creating: bool) -> None:
    data = user.data
    password = data.pop("password", None)
    if not data.get("email") and not data.get("username"):
        raise ValidationFailed.field("user.email", "blank", "You must specify either the email or the username.")
    email = str(data.get("email") or "").lower()
    username = str(data.get("username") or "").lower()
    for other in directory.users.values():
        if other.id == user.id or other.tenant_id != tenant.id:
            continue
        if email and (other.email or "").lower() == email:
            raise ValidationFailed.field("user.email", "duplicate", "A user with this email already exists.")
        if username and (other.username or "").lower() == username:
            raise ValidationFailed.field("user.username", "duplicate", "A user with this username already exists.")
    if password is not None:
        if len(str(password)) < _MIN_PASSWORD_LENGTH:
            raise ValidationFailed.field("user.password", "tooShort", f"At least {_MIN_PASSWORD_LENGTH} characters.")
        user.set_password(str(password))
        data["passwordLastUpdateInstant"] = directory.now_millis()
    elif creating:
        raise ValidationFailed.field("user.password", "blank", "You must specify a password.")
    data.setdefault("active", True)
    data.setdefault("verified", True)
    data.setdefault("passwordChangeRequired", False)
    data.setdefault("usernameStatus", "ACTIVE")
    data.setdefault("registrations", [])
    data.setdefault("twoFactor", {}).setdefault("methods", [])
    data["id"] = user.id
    data["tenantId"] = tenant.id
    _normalize_methods(directory, user, tenant)


def _create_user(call: Call, user_id: str, given: dict[str, Any]) -> User:
    if user_id in call.directory.users:
        raise ValidationFailed.field("user.id", "duplicate", f"A user with the id [{user_id}] already exists.")
    tenant = _tenant_for_write(call, given.get("tenantId"))
    user = User(id=user_id, tenant_id=tenant.id, data=copy.deepcopy(given))
    user.data.pop("registrations", None)
    _apply_user_fields(call.directory, user, tenant, creating=True)
    _stamp(user.data, call.directory, created=True)
    call.directory.users[user_id] = user
    return user


def create_user(call: Call) -> tuple[int, dict[str, Any] | None]:
    user = _create_user(call, _new_id(call, "user.id"), _object(call.body, "user"))
    return 200, {"user": user.to_json()}


def update_user(call: Call) -> tuple[int, dict[str, Any] | None]:
    user: User = _existing(call.directory.users, call.object_id)
    check_key_tenant(call.api_key, user.tenant_id)
    if call.method == "PUT" and call.query.get("reactivate") == "true":
        # The Reactivate a User API: PUT /api/user/{userId}?reactivate=true, no body.
        user.data["active"] = True
        _stamp(user.data, call.directory, created=False)
        call.directory.events.emit(call.directory, "user.reactivate", tenant_id=user.tenant_id, user=user.to_json())
        return 200, {"user": user.to_json()}
    given = _object(call.body, "user")
    if call.method == "PATCH":
        data = _patched(call, user.data, given)
    else:
        data = {**copy.deepcopy(given), "registrations": copy.deepcopy(user.data.get("registrations", []))}
    previous = (copy.deepcopy(user.data), dict(user.secrets), user.password_hash)
    user.data = data
    try:
        _apply_user_fields(call.directory, user, call.directory.tenant_of(user.tenant_id), creating=False)
    except FusionAuthError:
        user.data, user.secrets, user.password_hash = previous
        raise
    _stamp(user.data, call.directory, created=False)
    return 200, {"user": user.to_json()}


def delete_user(call: Call) -> tuple[int, dict[str, Any] | None]:
    """DELETE /api/user/{userId}: a soft delete (deactivation: the user can no longer sign in) unless
    ``hardDelete=true``, which removes the user. Empty 200. Sends ``user.deactivate`` or ``user.delete`` (and
    ``user.delete.complete``) to the webhooks that take them."""
    user: User = _existing(call.directory.users, call.object_id)
    check_key_tenant(call.api_key, user.tenant_id)
    deactivate_or_delete(call.directory, user, hard=call.query.get("hardDelete") == "true")
    return 200, None


def deactivate_or_delete(directory: Directory, user: User, *, hard: bool) -> None:
    """What the Delete User API does (the /_dev page's buttons too)."""
    if hard:
        del directory.users[user.id]
        # The user's refresh tokens go with it, as FusionAuth's do.
        for refresh_id in [r.id for r in directory.refresh_tokens.values() if r.user_id == user.id]:
            del directory.refresh_tokens[refresh_id]
        directory.events.emit(directory, "user.delete", tenant_id=user.tenant_id, user=user.to_json())
        directory.events.emit(directory, "user.delete.complete", tenant_id=user.tenant_id, user=user.to_json())
    else:
        user.data["active"] = False
        _stamp(user.data, directory, created=False)
        directory.events.emit(directory, "user.deactivate", tenant_id=user.tenant_id, user=user.to_json())


def retrieve_user(call: Call) -> tuple[int, dict[str, Any] | None]:
    user: User = _existing(call.directory.users, call.object_id)
    check_key_tenant(call.api_key, user.tenant_id)
    return 200, {"user": user.to_json()}


def register_user(call: Call) -> tuple[int, dict[str, Any] | None]:
    """``POST /api/user/registration[/{userId}]``: register a user, creating it first when ``user`` is given."""
    spec = _object(call.body, "registration")
    application_id = spec.get("applicationId")
    if not application_id:
        raise ValidationFailed.field("registration.applicationId", "blank", "You must specify the applicationId.")
    application = call.directory.applications.get(str(application_id))
    if application is None:
        raise ValidationFailed.field(
            "registration.applicationId", "invalid", f"The application [{application_id}] does not exist."
        )
    roles = spec.get("roles")
    if roles is None:
        roles = application.default_roles
    known_roles = {role["name"] for role in application.data.get("roles", [])}
    unknown = [role for role in roles if role not in known_roles]
    if unknown:
        raise ValidationFailed.field("registration.roles", "invalid", f"The application has no role {unknown}.")
    user_id = _new_id(call, "userId")
    given_user = call.body.get("user")
    previous_user = call.directory.users.get(user_id)
    if given_user is not None:
        user = _create_user(call, user_id, _object(call.body, "user"))
    elif previous_user is not None:
        user = previous_user
        check_key_tenant(call.api_key, user.tenant_id)
    else:
        raise ValidationFailed.field("userId", "invalid", f"The user [{user_id}] does not exist.")
    try:
        if user.tenant_id != application.tenant_id:
            raise ValidationFailed.field(
                "registration.applicationId", "invalid", "The application is in another tenant."
            )
        if user.registration(application.id) is not None:
            raise ValidationFailed.field(
                "registration.applicationId", "duplicate", "The user is already registered for this application."
            )
    except FusionAuthError:
        if previous_user is None:
            del call.directory.users[user_id]
        raise
    now = call.directory.now_millis()
    registration = {
        **copy.deepcopy(spec),
        "id": identifiers.new_uuid(),
        "applicationId": application.id,
        "roles": list(roles),
        # An application that verifies registrations starts them unverified, unless the request skips that.
        "verified": not application.verify_registration or bool(call.body.get("skipRegistrationVerification")),
        "usernameStatus": "ACTIVE",
        "insertInstant": now,
        "lastUpdateInstant": now,
    }
    user.data.setdefault("registrations", []).append(registration)
    return 200, {"registration": copy.deepcopy(registration), "user": user.to_json()}


# -- user actions and email templates -----------------------------------------------------------------------------


def _save_simple(
    call: Call, store: dict[str, dict[str, Any]], wrapper: str, required: tuple[str, ...]
) -> tuple[int, dict[str, Any] | None]:
    given = _object(call.body, wrapper)
    if call.method == "POST":
        object_id = _new_id(call, f"{wrapper}.id")
        if object_id in store:
            raise ValidationFailed.field(f"{wrapper}.id", "duplicate", f"[{object_id}] already exists.")
        data = copy.deepcopy(given)
    else:
        current = _existing(store, call.object_id)
        object_id = str(call.object_id)
        data = _patched(call, current, given) if call.method == "PATCH" else copy.deepcopy(given)
    for name in required:
        if not data.get(name):
            raise ValidationFailed.field(f"{wrapper}.{name}", "blank", f"You must specify the {name}.")
    data["id"] = object_id
    _stamp(data, call.directory, created=call.method == "POST")
    store[object_id] = data
    return 200, {wrapper: copy.deepcopy(data)}


def save_user_action(call: Call) -> tuple[int, dict[str, Any] | None]:
    return _save_simple(call, call.directory.user_actions, "userAction", ("name",))


def retrieve_user_action(call: Call) -> tuple[int, dict[str, Any] | None]:
    return 200, {"userAction": copy.deepcopy(_existing(call.directory.user_actions, call.object_id))}


def save_email_template(call: Call) -> tuple[int, dict[str, Any] | None]:
    required = ("name", "defaultSubject", "defaultHtmlTemplate", "defaultTextTemplate")
    return _save_simple(call, call.directory.email_templates, "emailTemplate", required)


def retrieve_email_template(call: Call) -> tuple[int, dict[str, Any] | None]:
    return 200, {"emailTemplate": copy.deepcopy(_existing(call.directory.email_templates, call.object_id))}


# -- webhooks -----------------------------------------------------------------------------------------------------


def _check_webhook(directory: Directory, data: dict[str, Any]) -> None:
    if not str(data.get("url") or ""):
        raise ValidationFailed.field("webhook.url", "blank", "You must specify the URL.")
    for name in ("connectTimeout", "readTimeout"):
        value = data.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValidationFailed.field(f"webhook.{name}", "blank", f"You must specify {name} in milliseconds.")
    signature = data.get("signatureConfiguration") or {}
    if signature.get("enabled"):
        key_id = signature.get("signingKeyId")
        if not key_id:
            raise ValidationFailed.field(
                "webhook.signatureConfiguration.signingKeyId", "blank", "A signed webhook needs a signing key."
            )
        if key_id not in directory.keys:
            raise ValidationFailed.field(
                "webhook.signatureConfiguration.signingKeyId", "invalid", f"The key [{key_id}] does not exist."
            )
    for tenant_id in data.get("tenantIds") or []:
        if tenant_id not in directory.tenants:
            raise ValidationFailed.field("webhook.tenantIds", "invalid", f"The tenant [{tenant_id}] does not exist.")


def save_webhook(call: Call) -> tuple[int, dict[str, Any] | None]:
    """Create (POST), replace (PUT) or update (PATCH) a webhook (docs/fusionauth.md §14). Global API keys only, as the
    Webhook API's pages say."""
    if call.api_key.tenant_id is not None:
        raise Unauthorized()
    given = _object(call.body, "webhook")
    if call.method == "POST":
        webhook_id = _unused_id(call, call.directory.webhooks, "webhook.id", "A webhook")
        data = {"global": False, "eventsEnabled": {}, "headers": {}, **copy.deepcopy(given)}
    else:
        current = _existing(call.directory.webhooks, call.object_id)
        webhook_id = str(call.object_id)
        data = _patched(call, current, given) if call.method == "PATCH" else copy.deepcopy(given)
    data["id"] = webhook_id
    _check_webhook(call.directory, data)
    _stamp(data, call.directory, created=call.method == "POST")
    call.directory.webhooks[webhook_id] = data
    return 200, {"webhook": copy.deepcopy(data)}


def retrieve_webhook(call: Call) -> tuple[int, dict[str, Any] | None]:
    if call.object_id is None:
        return 200, {"webhooks": [copy.deepcopy(hook) for hook in call.directory.webhooks.values()]}
    return 200, {"webhook": copy.deepcopy(_existing(call.directory.webhooks, call.object_id))}


def delete_webhook(call: Call) -> tuple[int, dict[str, Any] | None]:
    if call.api_key.tenant_id is not None:
        raise Unauthorized()
    _existing(call.directory.webhooks, call.object_id)
    del call.directory.webhooks[str(call.object_id)]
    return 200, None


# -- the route table ----------------------------------------------------------------------------------------------

# More specific paths first: Starlette (and ``dispatch``) take the first match, and "/api/user/{id}" would otherwise
# swallow "POST /api/user/registration".
ROUTES: tuple[Route, ...] = (
    Route("POST", "/api/key/generate", "/api/key/generate", generate_key),
    Route("POST", "/api/key/generate/{id}", "/api/key/generate", generate_key),
    Route("GET", "/api/key/{id}", "/api/key", retrieve_key),
    Route("POST", "/api/api-key", "/api/api-key", create_api_key, key_manager=True),
    Route("POST", "/api/api-key/{id}", "/api/api-key", create_api_key, key_manager=True),
    Route("GET", "/api/api-key/{id}", "/api/api-key", retrieve_api_key, key_manager=True),
    Route("POST", "/api/tenant", "/api/tenant", create_tenant),
    Route("POST", "/api/tenant/{id}", "/api/tenant", create_tenant),
    Route("PUT", "/api/tenant/{id}", "/api/tenant", update_tenant),
    Route("PATCH", "/api/tenant/{id}", "/api/tenant", update_tenant),
    Route("GET", "/api/tenant/{id}", "/api/tenant", retrieve_tenant),
    Route("POST", "/api/application", "/api/application", create_application),
    Route("GET", "/api/application", "/api/application", retrieve_application),
    Route("POST", "/api/application/{id}", "/api/application", create_application),
    Route("PUT", "/api/application/{id}", "/api/application", update_application),
    Route("PATCH", "/api/application/{id}", "/api/application", update_application),
    Route("GET", "/api/application/{id}", "/api/application", retrieve_application),
    Route("POST", "/api/user/registration", "/api/user/registration", register_user),
    Route("POST", "/api/user/registration/{id}", "/api/user/registration", register_user),
    Route("POST", "/api/user", "/api/user", create_user),
    Route("POST", "/api/user/{id}", "/api/user", create_user),
    Route("PUT", "/api/user/{id}", "/api/user", update_user),
    Route("PATCH", "/api/user/{id}", "/api/user", update_user),
    Route("GET", "/api/user/{id}", "/api/user", retrieve_user),
    Route("DELETE", "/api/user/{id}", "/api/user", delete_user),
    Route("POST", "/api/user-action", "/api/user-action", save_user_action),
    Route("POST", "/api/user-action/{id}", "/api/user-action", save_user_action),
    Route("PUT", "/api/user-action/{id}", "/api/user-action", save_user_action),
    Route("PATCH", "/api/user-action/{id}", "/api/user-action", save_user_action),
    Route("GET", "/api/user-action/{id}", "/api/user-action", retrieve_user_action),
    Route("POST", "/api/email/template", "/api/email/template", save_email_template),
    Route("POST", "/api/email/template/{id}", "/api/email/template", save_email_template),
    Route("PUT", "/api/email/template/{id}", "/api/email/template", save_email_template),
    Route("PATCH", "/api/email/template/{id}", "/api/email/template", save_email_template),
    Route("GET", "/api/email/template/{id}", "/api/email/template", retrieve_email_template),
    Route("POST", "/api/webhook", "/api/webhook", save_webhook),
    Route("GET", "/api/webhook", "/api/webhook", retrieve_webhook),
    Route("POST", "/api/webhook/{id}", "/api/webhook", save_webhook),
    Route("PUT", "/api/webhook/{id}", "/api/webhook", save_webhook),
    Route("PATCH", "/api/webhook/{id}", "/api/webhook", save_webhook),
    Route("GET", "/api/webhook/{id}", "/api/webhook", retrieve_webhook),
    Route("DELETE", "/api/webhook/{id}", "/api/webhook", delete_webhook),
)


def match(method: str, path: str) -> tuple[Route, str | None]:
    for route in ROUTES:
        if route.method != method.upper():
            continue
        found = route.pattern.match(path)
        if found:
            return route, found.groupdict().get("id")
    raise UnknownRequest(f"{method} {path}")


def handle(
    directory: Directory,
    route: Route,
    *,
    authorization: str | None,
    object_id: str | None,
    body: dict[str, Any],
    tenant_header: str | None,
    content_type: str,
    query: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    api_key = require_api_key(directory, authorization, route.endpoint, route.method)
    if route.key_manager and not api_key.key_manager:
        # The API Key API "can only be accessed using an API key that has a keyManager attribute of true".
        raise Unauthorized()
    call = Call(
        directory=directory,
        api_key=api_key,
        method=route.method,
        object_id=object_id,
        body=body,
        tenant_id=header_tenant(directory, tenant_header),
        content_type=content_type or "application/json",
        query=dict(query or {}),
    )
    return route.handler(call)


def dispatch(
    directory: Directory,
    method: str,
    url: str,
    *,
    api_key: str,
    body: dict[str, Any] | None,
    tenant_id: str | None = None,
    content_type: str | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Apply one request as if it had arrived over HTTP. Raises UnknownRequest or FusionAuthError."""
    path, _, query = url.partition("?")
    route, object_id = match(method, path)
    return handle(
        directory,
        route,
        authorization=api_key,
        object_id=object_id,
        body=body or {},
        tenant_header=tenant_id,
        content_type=content_type or "application/json",
        query={name: values[-1] for name, values in parse_qs(query).items()},
    )


async def read_json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed.general("[invalidJSON]", "The request body is not valid JSON.") from exc
    if not isinstance(value, dict):
        raise ValidationFailed.general("[invalidJSON]", "The request body must be a JSON object.")
    return value


def _endpoint(route: Route) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        directory: Directory = request.app.state.directory
        body = await read_json_object(request) if route.method not in ("GET", "DELETE") else {}
        status, payload = handle(
            directory,
            route,
            authorization=request.headers.get("authorization"),
            object_id=request.path_params.get("id"),
            body=body,
            tenant_header=request.headers.get(TENANT_HEADER),
            content_type=request.headers.get("content-type", "application/json"),
            query=dict(request.query_params),
        )
        if payload is None:
            return Response(status_code=status)
        return JSONResponse(payload, status_code=status)

    endpoint.__name__ = f"{route.method.lower()}_{route.template.strip('/').replace('/', '_').replace('{id}', 'id')}"
    return endpoint


def install_routes(app: FastAPI) -> None:
    for route in ROUTES:
        app.add_api_route(route.template, _endpoint(route), methods=[route.method], include_in_schema=False)
