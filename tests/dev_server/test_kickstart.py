"""Kickstart loading: substitution, includes, errors, unknown requests, the seed summary, and schema conformance."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from fusionauth_dev import KickstartError, ManualClock, Seed, create_dev_server, fill_missing, load_kickstart
from support.openapi import openapi

from .conftest import EMAIL_OVERLAY, ENV, KICKSTART, START

MINIMAL_KEY = {"key": "admin-key-for-tests"}


def write(tmp_path: Path, document: dict[str, Any], name: str = "kickstart.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_missing_env_variable_is_a_clear_error() -> None:
    env = {k: v for k, v in ENV.items() if k != "FUSIONAUTH_CLIENT_SECRET"}
    with pytest.raises(KickstartError) as raised:
        load_kickstart([KICKSTART], env=env)
    message = str(raised.value)
    assert "FUSIONAUTH_CLIENT_SECRET" in message
    assert "kickstart.json" in message and "variables.clientSecret" in message


def test_substitution_of_variables_env_uuid_and_escapes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "variables": {"a": "#{ENV.X}-1", "b": "#{a}-2", "id": "#{UUID()}"},
            "apiKeys": [MINIMAL_KEY],
            "requests": [
                {
                    "method": "POST",
                    "url": "/api/user-action/#{id}",
                    "body": {
                        "userAction": {
                            "name": "#{b} #{UUID()} #{UUID()}",
                            "escaped": "\\#{a}",
                            "builtins": "#{FUSIONAUTH_APPLICATION_ID}",
                        }
                    },
                }
            ],
        },
    )
    plan = load_kickstart([path], env={"X": "x"})
    [request] = plan.requests
    assert request.url == f"/api/user-action/{plan.variables['id']}"
    body = request.body or {}
    name = body["userAction"]["name"]
    assert name.startswith("x-1-2 ")
    first, second = name.split()[1:]
    assert re.fullmatch(r"[0-9a-f-]{36}", first) and first != second
    assert body["userAction"]["escaped"] == "#{a}"
    assert body["userAction"]["builtins"] == "3c219e58-ed0e-4b18-ad48-f4f92793ae32"


def test_undefined_variable_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, {"apiKeys": [MINIMAL_KEY], "requests": [{"method": "POST", "url": "/api/x/#{nope}"}]})
    with pytest.raises(KickstartError, match=r"#\{nope\}"):
        load_kickstart([path], env={})


def test_includes(tmp_path: Path) -> None:
    (tmp_path / "emails").mkdir()
    (tmp_path / "emails" / "code.txt").write_text("Code: ${code} for #{who}", encoding="utf-8")
    write(tmp_path, {"emailTemplate": {"name": "From a file"}}, "template.json")
    path = write(
        tmp_path,
        {
            "variables": {"who": "you"},
            "apiKeys": [MINIMAL_KEY],
            "requests": [
                {"method": "POST", "url": "/api/email/template", "body": "&{template.json}"},
                {
                    "method": "POST",
                    "url": "/api/email/template",
                    "body": {"emailTemplate": {"t": "@{emails/code.txt}"}},
                },
            ],
        },
    )
    first, second = load_kickstart([path], env={}).requests
    assert first.body == {"emailTemplate": {"name": "From a file"}}
    assert second.body == {"emailTemplate": {"t": "Code: ${code} for you"}}


def test_default_tenant_id_and_builtin_tenant_variable(tmp_path: Path) -> None:
    tenant_id = "11111111-2222-4333-8444-555555555555"
    path = write(
        tmp_path,
        {
            "variables": {"defaultTenantId": tenant_id, "t": "#{FUSIONAUTH_TENANT_ID}"},
            "apiKeys": [MINIMAL_KEY],
            "requests": [{"method": "PATCH", "url": "/api/tenant/#{t}", "body": {"tenant": {"issuer": "https://x"}}}],
        },
    )
    server = create_dev_server([path], env={})
    assert server.seed().tenant_id == tenant_id
    assert server.seed().issuer == "https://x"


def test_unknown_request_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(
        tmp_path,
        {
            "apiKeys": [MINIMAL_KEY],
            "requests": [
                {"method": "POST", "url": "/api/theme/abc", "body": {"theme": {"name": "Dark"}}},
                {"method": "POST", "url": "/api/user-action", "body": {"userAction": {"name": "Still applied"}}},
            ],
        },
    )
    with caplog.at_level(logging.WARNING, logger="fusionauth_dev.kickstart"):
        server = create_dev_server([path], env={})
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("POST /api/theme/abc" in m and "requests[0]" in m for m in warnings), warnings
    assert server.seed().skipped_requests == ("POST /api/theme/abc",)
    assert [action["name"] for action in server.directory.user_actions.values()] == ["Still applied"]


def test_a_failing_request_stops_with_its_status_and_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "apiKeys": [MINIMAL_KEY],
            "requests": [{"method": "POST", "url": "/api/application", "body": {"application": {}}}],
        },
    )
    with pytest.raises(KickstartError, match=r"requests\[0\].*HTTP 400.*application\.name"):
        create_dev_server([path], env={})


def test_only_post_put_patch_are_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, {"apiKeys": [MINIMAL_KEY], "requests": [{"method": "GET", "url": "/api/status"}]})
    with pytest.raises(KickstartError, match="method"):
        load_kickstart([path], env={})


def test_the_first_api_key_must_be_global(tmp_path: Path) -> None:
    restricted = {"key": "k", "permissions": {"endpoints": {"/api/user": ["GET"]}}}
    with pytest.raises(KickstartError, match="global"):
        create_dev_server([write(tmp_path, {"apiKeys": [restricted]})], env={})


def test_comments_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    path.write_text('{"apiKeys": [] // no\n}', encoding="utf-8")
    with pytest.raises(KickstartError, match="comments"):
        load_kickstart([path], env={})


def test_seed_summary_of_the_repository_kickstart(seed: Seed) -> None:
    assert seed.issuer == "http://localhost:9011"
    assert seed.tenant_id == "d7d09513-a3f5-401c-9685-34ab6c552453"
    assert seed.application.id == "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
    assert seed.application.client_secret == ENV["FUSIONAUTH_CLIENT_SECRET"]
    assert seed.admin_api_key.key == ENV["FUSIONAUTH_ADMIN_API_KEY"] and seed.admin_api_key.endpoints is None
    assert seed.bff_api_key.key == ENV["FUSIONAUTH_BFF_API_KEY"]
    assert seed.bff_api_key.endpoints == {
        "/api/login": ("POST",),
        "/api/two-factor/start": ("POST",),
        "/api/jwt/refresh": ("DELETE",),
        "/api/application": ("GET",),
        "/api/user-action": ("GET",),
        "/api/webhook": ("GET",),
        "/api/key": ("GET",),
        "/api/tenant": ("GET",),
        "/api/user": ("GET",),
        "/api/two-factor/secret": ("GET",),
        "/api/user/two-factor": ("DELETE", "POST"),
    }
    methods = {user.email: sorted(m.method for m in user.methods) for user in seed.users}
    assert methods == {
        "alice@example.com": ["authenticator"],
        "bob@example.com": ["email"],
        "carol@example.com": ["authenticator", "email"],
        "dave@example.com": [],
    }
    assert {user.password for user in seed.users} == {"stepup-demo"}
    alice = seed.user("alice@example.com")
    assert alice.totp_secret == "KnCWSYwMi0S4pr92R7iRpUyfDow="
    method = alice.method("authenticator")
    assert method is not None and method.secret_base32
    assert len(method.code_at(START)) == 6
    assert "stepup-demo" in seed.describe() and seed.application.name in seed.describe()


def test_without_the_overlay_bob_has_no_second_factor(clock: ManualClock) -> None:
    seed = create_dev_server([KICKSTART], env=ENV, clock=clock).seed()
    assert seed.user("bob@example.com").methods == ()
    assert [m.method for m in seed.user("carol@example.com").methods] == ["authenticator"]


def test_fill_missing_generates_only_absent_secrets() -> None:
    filled, generated = fill_missing({"FUSIONAUTH_CLIENT_SECRET": "given"})
    assert filled["FUSIONAUTH_CLIENT_SECRET"] == "given"
    assert generated == ["FUSIONAUTH_ADMIN_API_KEY", "FUSIONAUTH_BFF_API_KEY"]
    assert len(filled["FUSIONAUTH_BFF_API_KEY"]) >= 32


# -- every kickstart request body validates against FusionAuth's OpenAPI request schema ----------------------------


def _operation(method: str, url: str) -> dict[str, Any]:
    path = url.split("?", 1)[0]
    for template, item in openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), path) and method.lower() in item:
            operation: dict[str, Any] = item[method.lower()]
            return operation
    raise AssertionError(f"{method} {url} is not in FusionAuth's OpenAPI spec")


def _unknown_properties(value: Any, schema: dict[str, Any], where: str) -> list[str]:
    """Fields the spec does not define: a typo would otherwise validate (the spec allows extra properties)."""
    if "$ref" in schema:
        schema = openapi()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for name, item in value.items():
            if name not in schema["properties"]:
                found.append(f"{where}.{name}")
            else:
                found += _unknown_properties(item, schema["properties"][name], f"{where}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _unknown_properties(item, schema["items"], f"{where}[{index}]")
    return found


@pytest.mark.parametrize("files", [[KICKSTART], [KICKSTART, EMAIL_OVERLAY]], ids=["kickstart", "email-overlay"])
def test_request_bodies_match_the_openapi_request_schemas(files: list[Path]) -> None:
    plan = load_kickstart(files, env=ENV)
    registry: Registry[Any] = Registry().with_resource("openapi", Resource(contents=openapi(), specification=DRAFT7))
    for request in plan.requests:
        operation = _operation(request.method, request.url)
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft7Validator(
            {"$ref": "openapi#/components/schemas/" + schema["$ref"].rsplit("/", 1)[1]},
            registry=registry,
            format_checker=jsonschema.FormatChecker(),  # all formats, "uuid" included
        )
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(request.body)]
        assert not errors, (request.source, errors)
        assert not _unknown_properties(request.body, schema, "body"), request.source
    for entry in plan.api_keys:
        spec = {k: v for k, v in entry.spec.items() if k != "description"}  # kickstart's own field
        assert not _unknown_properties(spec, {"$ref": "#/components/schemas/APIKey"}, "apiKey")


def test_the_primary_key_may_create_api_keys_unless_told_otherwise(tmp_path: Path) -> None:
    create = {"method": "POST", "url": "/api/api-key", "body": {"apiKey": {"key": "second-key-value"}}}
    server = create_dev_server([write(tmp_path, {"apiKeys": [MINIMAL_KEY], "requests": [create]})], env={})
    assert {key.key for key in server.seed().api_keys} == {"admin-key-for-tests", "second-key-value"}
    refused = write(tmp_path, {"apiKeys": [{**MINIMAL_KEY, "keyManager": False}], "requests": [create]}, "k2.json")
    with pytest.raises(KickstartError, match="HTTP 401"):
        create_dev_server([refused], env={})
