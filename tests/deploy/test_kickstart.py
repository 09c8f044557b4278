"""The kickstart files, held to FusionAuth's OpenAPI schemas and to every setting the BFF relies on.

FusionAuth applies kickstart once, on an empty instance, and a request it rejects stops the rest: a mistake here shows
up only as a half-configured FusionAuth inside Docker. These tests catch it without Docker.
"""

from __future__ import annotations

import ast
import copy
import re
from functools import cache
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from deploy.files import (
    EMAIL_OVERLAY,
    KICKSTART,
    ROOT,
    Kickstart,
    Request,
    config_example,
    env_names,
    load_kickstart,
)
from stepup_bff.settings import StepUpSettings
from support.openapi import OPENAPI_PATH, OPENAPI_SHA256, OPENAPI_VERSION, openapi, openapi_digest

APPLICATION_ID = "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
_SPEC_URI = "urn:fusionauth-openapi"

# Where the OpenAPI document is known to be wrong about a request body, FusionAuth's documentation wins; each exception
# names the operation and the JSON path of the value, and says why. None is needed today. (The document's known
# error, Errors.fieldErrors typed as an array, is in a response schema, which kickstart never sends.)
SPEC_EXCEPTIONS: dict[tuple[str, str], str] = {}

COMMUNITY = load_kickstart(KICKSTART)
WITH_OVERLAY = load_kickstart(KICKSTART, EMAIL_OVERLAY)


def _closed(node: Any) -> None:
    """additionalProperties: false on every object schema that lists its properties and does not say otherwise.

    FusionAuth's schemas leave objects open; closed, a misspelt field name (which FusionAuth would reject or ignore,
    leaving a default in place) fails here instead of inside Docker.
    """
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for child in node.values():
            _closed(child)
    elif isinstance(node, list):
        for child in node:
            _closed(child)


@cache
def _registry() -> Registry[Any]:
    schemas = copy.deepcopy(openapi()["components"]["schemas"])
    _closed(schemas)
    resource = Resource.from_contents({"components": {"schemas": schemas}}, default_specification=DRAFT7)
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
    return registry


def _validator(schema_ref: str) -> Draft7Validator:
    return Draft7Validator({"$ref": _SPEC_URI + schema_ref}, registry=_registry(), format_checker=FormatChecker())


def operation_for(method: str, url: str) -> tuple[str, dict[str, Any]]:
    """The OpenAPI path template and operation for a concrete request; literal segments beat {parameters}."""
    segments = url.split("?")[0].strip("/").split("/")
    candidates: list[tuple[int, str, dict[str, Any]]] = []
    for template, item in openapi()["paths"].items():
        parts = template.strip("/").split("/")
        operation = item.get(method.lower())
        if operation is None or len(parts) != len(segments):
            continue
        if all(
            part == segment or (part.startswith("{") and part.endswith("}"))
            for part, segment in zip(parts, segments, strict=True)
        ):
            literal = sum(not part.startswith("{") for part in parts)
            candidates.append((literal, template, operation))
    assert candidates, f"no operation {method} {url} in the OpenAPI document: FusionAuth has no such API"
    candidates.sort(key=lambda candidate: candidate[0], reverse=True)
    assert len(candidates) == 1 or candidates[0][0] > candidates[1][0], f"{method} {url} is ambiguous"
    return candidates[0][1], candidates[0][2]


def _request_schema(operation: dict[str, Any], label: str) -> str:
    try:
        ref: str = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    except KeyError:
        pytest.fail(f"{label}: the OpenAPI operation takes no JSON body")
    return ref


def _errors(validator: Draft7Validator, instance: Any, operation_name: str) -> list[str]:
    problems = []
    for error in sorted(validator.iter_errors(instance), key=ValidationError.__str__):
        where = ".".join(str(part) for part in error.absolute_path)
        if (operation_name, where) not in SPEC_EXCEPTIONS:
            problems.append(f"{where or '(body)'}: {error.message}")
    return problems


def test_the_openapi_document_is_the_one_tests_data_describes() -> None:
    assert openapi_digest() == OPENAPI_SHA256, f"{OPENAPI_PATH} changed: see tests/data/README.md"
    assert openapi()["info"]["version"] == OPENAPI_VERSION


@pytest.mark.parametrize("request_", WITH_OVERLAY.requests, ids=lambda request: request.label)
def test_every_request_body_matches_its_openapi_schema(request_: Request) -> None:
    template, operation = operation_for(request_.method, request_.url)
    validator = _validator(_request_schema(operation, request_.label))
    problems = _errors(validator, request_.body, f"{request_.method} {template}")
    assert not problems, f"{request_.label} ({operation['operationId']}):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("index", range(len(COMMUNITY.api_keys)))
def test_every_api_key_matches_the_openapi_schema(index: int) -> None:
    # Kickstart's apiKeys[] entries are API keys plus a `description`, which FusionAuth stores as metaData.
    spec = {name: value for name, value in COMMUNITY.api_keys[index].items() if name != "description"}
    problems = _errors(_validator("#/components/schemas/APIKey"), spec, "apiKeys")
    assert not problems, f"apiKeys[{index}]:\n  " + "\n  ".join(problems)


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    # The closed schemas are what make the test above worth having; prove they bite.
    body = {"application": {"oauthConfiguration": {"proofKeyForCodeExchangePolicy": "Required", "redirectURLs": []}}}
    problems = _errors(_validator("#/components/schemas/ApplicationRequest"), body, "test")
    assert problems == [
        "application.oauthConfiguration: Additional properties are not allowed ('redirectURLs' was unexpected)"
    ]


def test_every_spec_exception_is_still_needed() -> None:
    for operation_name, where in SPEC_EXCEPTIONS:
        method, template = operation_name.split(" ", 1)
        hits = [
            r
            for r in WITH_OVERLAY.requests
            if r.method == method and operation_for(r.method, r.url)[0] == template and _has_path(r.body, where)
        ]
        assert hits, f"SPEC_EXCEPTIONS[{operation_name!r}, {where!r}] matches no request any more: remove it"


def _has_path(body: Any, where: str) -> bool:
    for part in where.split("."):
        if isinstance(body, dict) and part in body:
            body = body[part]
        elif isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        else:
            return False
    return True


# -- the settings the BFF relies on ----------------------------------------------------------------------------------


def _application(kickstart: Kickstart = COMMUNITY) -> dict[str, Any]:
    body = kickstart.one("POST", f"/api/application/{APPLICATION_ID}").body
    application: dict[str, Any] = body["application"]
    return application


def _tenant_patch(kickstart: Kickstart = COMMUNITY) -> dict[str, Any]:
    tenant_id = kickstart.variables["defaultTenantId"]
    tenant: dict[str, Any] = kickstart.one("PATCH", f"/api/tenant/{tenant_id}").body["tenant"]
    return tenant


def test_the_application_id_is_the_one_in_config_example() -> None:
    assert COMMUNITY.variables["applicationId"] == APPLICATION_ID
    assert config_example()["fusionauth"]["application_id"] == APPLICATION_ID


def test_redirect_urls_are_the_bffs_callback_and_post_logout_page() -> None:
    public_url = config_example()["public_url"]
    oauth = _application()["oauthConfiguration"]
    # /auth/callback is where FusionAuth sends the code (settings.callback_url).
    assert f"{public_url}/auth/callback" in oauth["authorizedRedirectURLs"]
    # Sign-out sends post_logout_redirect_uri = public_url + "/", which FusionAuth honours only when authorized.
    assert f"{public_url}/" in oauth["authorizedRedirectURLs"]
    assert oauth["logoutURL"] == f"{public_url}/"


def test_pkce_and_client_authentication_are_required() -> None:
    oauth = _application()["oauthConfiguration"]
    assert oauth["proofKeyForCodeExchangePolicy"] == "Required"
    assert oauth["clientAuthenticationPolicy"] == "Required"
    assert oauth["clientSecret"] == COMMUNITY.variables["clientSecret"]
    assert "#{ENV.FUSIONAUTH_CLIENT_SECRET}" in KICKSTART.read_text(), "the client secret comes from the environment"


def test_an_rs256_key_is_generated_and_signs_every_token() -> None:
    key_id = COMMUNITY.variables["signingKeyId"]
    generated = COMMUNITY.one("POST", f"/api/key/generate/{key_id}").body["key"]
    assert generated["algorithm"] == "RS256"
    assert generated["length"] >= 2048
    tenant_jwt = _tenant_patch()["jwtConfiguration"]
    application_jwt = _application()["jwtConfiguration"]
    # The default signing key may be HMAC, which JWKS never publishes (docs/fusionauth.md §6.6): both levels name ours.
    assert tenant_jwt["accessTokenKeyId"] == tenant_jwt["idTokenKeyId"] == key_id
    assert application_jwt["enabled"] is True
    assert application_jwt["accessTokenKeyId"] == application_jwt["idTokenKeyId"] == key_id


def test_refresh_tokens_are_issued() -> None:
    oauth = _application()["oauthConfiguration"]
    assert {"authorization_code", "refresh_token"} <= set(oauth["enabledGrants"])
    assert oauth["generateRefreshTokens"] is True


def test_the_tenant_issuer_is_fusionauths_browser_url() -> None:
    # The BFF compares `iss` with discovery's issuer; in docker-compose browsers reach FusionAuth here.
    assert _tenant_patch()["issuer"] == "http://localhost:9011"


def test_the_two_factor_id_lives_as_long_as_a_bff_challenge() -> None:
    ttl = _tenant_patch()["externalIdentifierConfiguration"]["twoFactorIdTimeToLiveInSeconds"]
    assert ttl == config_example()["step_up"]["challenge_ttl"]


def test_the_first_api_key_is_global() -> None:
    first = COMMUNITY.api_keys[0]
    # FusionAuth runs no kickstart without a first, global key (docs/fusionauth.md §9).
    assert "tenantId" not in first
    assert not (first.get("permissions") or {}).get("endpoints")
    assert first["key"] == COMMUNITY.variables["adminApiKey"]


def _api_key_calls(source: str) -> set[tuple[str, str]]:
    """(method, endpoint) of every call made with `api_key=True`; the endpoint is the path without its trailing id,
    which is how FusionAuth's key permissions name it (DELETE /api/jwt/refresh/{id} is /api/jwt/refresh)."""
    calls = set()
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        if not any(
            k.arg == "api_key" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords
        ):
            continue
        arguments = list(node.args)
        position = next(
            i
            for i, arg in enumerate(arguments)
            if isinstance(arg, ast.Constant) and arg.value in ("GET", "POST", "PUT", "PATCH", "DELETE")
        )
        method, path = arguments[position], arguments[position + 1]
        assert isinstance(method, ast.Constant)
        if isinstance(path, ast.JoinedStr):  # f"/api/jwt/refresh/{id}": the literal start
            first = path.values[0]
            assert isinstance(first, ast.Constant)
            literal = str(first.value)
        else:
            assert isinstance(path, ast.Constant)
            literal = str(path.value)
        calls.add((str(method.value), literal.split("?")[0].rstrip("/")))
    return calls


def test_the_bffs_api_key_may_call_exactly_what_the_bff_and_doctor_call() -> None:
    sources = [ROOT / "src" / "stepup_bff" / name for name in ("fusionauth/client.py", "ops/doctor.py")]
    used = set().union(*(_api_key_calls(path.read_text(encoding="utf-8")) for path in sources))
    assert ("POST", "/api/two-factor/start") in used  # the scan itself works
    assert ("POST", "/api/login") in used  # native sign-in (FusionAuthClient.login) and doctor's probe of it
    created = COMMUNITY.one("POST", f"/api/api-key/{COMMUNITY.variables['bffApiKeyId']}").body["apiKey"]
    assert created["key"] == COMMUNITY.variables["bffApiKey"]
    assert "#{ENV.FUSIONAUTH_BFF_API_KEY}" in KICKSTART.read_text(), "the key comes from the environment"
    allowed = {
        (method, endpoint) for endpoint, methods in created["permissions"]["endpoints"].items() for method in methods
    }
    assert allowed == used
    # Scoped to the application's tenant: even a leaked key reaches no other tenant.
    assert created["tenantId"] == COMMUNITY.variables["defaultTenantId"]


def test_totp_is_enabled() -> None:
    authenticator = _tenant_patch()["multiFactorConfiguration"]["authenticator"]
    assert authenticator == {"enabled": True, "algorithm": "HmacSHA1", "codeLength": 6, "timeStep": 30}


def test_the_community_file_uses_no_paid_mfa() -> None:
    # Email and SMS MFA need a paid plan; FusionAuth answers 400 without a licence, which would stop kickstart.
    mfa = _tenant_patch()["multiFactorConfiguration"]
    assert not (mfa.get("email") or {}).get("enabled")
    assert not (mfa.get("sms") or {}).get("enabled")
    assert "licenseId" not in KICKSTART.read_text() and "/api/email/template" not in KICKSTART.read_text()
    methods = {
        method["method"]
        for request in COMMUNITY.requests
        for method in ((request.body.get("user") or {}).get("twoFactor") or {}).get("methods") or []
    }
    assert methods == {"authenticator"}


def test_the_overlay_adds_email_mfa_for_users_the_kickstart_created() -> None:
    overlay = load_kickstart(EMAIL_OVERLAY)
    template_id = overlay.variables["twoFactorEmailTemplateId"]
    overlay.one("POST", f"/api/email/template/{template_id}")
    email = _tenant_patch(overlay)["multiFactorConfiguration"]["email"]
    assert email == {"enabled": True, "templateId": template_id}
    created_users = {r.url.rsplit("/", 1)[1] for r in COMMUNITY.find("POST", "/api/user/registration/")}
    patched = {r.url.rsplit("/", 1)[1] for r in overlay.find("PATCH", "/api/user/")}
    assert patched and patched <= created_users


def test_failed_sign_ins_lock_the_account_with_a_user_action_that_prevents_login() -> None:
    failed = _tenant_patch()["failedAuthenticationConfiguration"]
    action_id = COMMUNITY.variables["lockoutUserActionId"]
    assert failed["userActionId"] == action_id
    assert failed["tooManyAttempts"] > 0
    assert failed["actionDuration"] > 0
    # FusionAuth acts on failed attempts only through a user action that prevents login (docs/fusionauth.md §4).
    action = COMMUNITY.one("POST", f"/api/user-action/{action_id}").body["userAction"]
    assert action["preventLogin"] is True
    assert action["temporal"] is True


def test_the_bff_asks_to_start_again_before_the_tenant_locks_the_account() -> None:
    """README (Step-up, what stops abuse): the BFF's per-challenge limit comes first, so a person sees "start again"
    before FusionAuth's lockout can count enough failures within one challenge; the lockout is temporal, and so is
    answered as temporarily_locked, not as "contact support"."""
    failed = _tenant_patch()["failedAuthenticationConfiguration"]
    max_attempts = config_example()["step_up"]["max_attempts"]
    assert max_attempts == StepUpSettings().max_attempts
    assert max_attempts < failed["tooManyAttempts"]


def test_every_id_is_created_before_a_request_uses_it() -> None:
    # Kickstart runs requests in order and stops at the first failure: a reference to an object created later fails.
    uuid_pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    created: dict[str, int] = {}
    for position, request in enumerate(WITH_OVERLAY.requests):
        if request.method == "POST" and uuid_pattern.fullmatch(request.url.rsplit("/", 1)[1]):
            created.setdefault(request.url.rsplit("/", 1)[1], position)
    for position, request in enumerate(WITH_OVERLAY.requests):
        own = request.url.rsplit("/", 1)[1] if request.method == "POST" else None
        for used in set(uuid_pattern.findall(request.url + repr(request.body))) - {own}:
            if used in created:
                assert created[used] < position, f"{request.label} uses {used} before it is created"


def test_kickstart_reads_the_documented_environment_variables() -> None:
    assert env_names(KICKSTART) == {
        "FUSIONAUTH_ADMIN_API_KEY",
        "FUSIONAUTH_BFF_API_KEY",
        "FUSIONAUTH_CLIENT_SECRET",
        "BFF_WEBHOOK_URL",
    }
    assert env_names(EMAIL_OVERLAY) == set()
