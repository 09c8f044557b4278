"""The deployment files, read the way their consumers read them: kickstart with FusionAuth's #{...} substitution,
docker-compose.yml with Compose's ${...} interpolation, the Dockerfile instruction by instruction.

These readers are deliberately independent of `fusionauth_dev.kickstart`: the tests hold the files to FusionAuth's
documented format (docs/fusionauth.md §9, §11), not to the dev server's reading of it.
"""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KICKSTART = ROOT / "kickstart" / "kickstart.json"
EMAIL_OVERLAY = ROOT / "kickstart" / "email-mfa.json"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CONFIG_EXAMPLE = ROOT / "config.example.toml"

# Plausible values for kickstart's #{ENV.*} variables where the exact value does not matter.
PLAUSIBLE_ENV = {
    "FUSIONAUTH_ADMIN_API_KEY": "plausible-admin-api-key-0123456789abcdef",
    "FUSIONAUTH_BFF_API_KEY": "plausible-bff-api-key-0123456789abcdef",
    "FUSIONAUTH_CLIENT_SECRET": "plausible-client-secret-0123456789abcdef",
    "BFF_WEBHOOK_URL": "http://bff:9000/webhooks/fusionauth",
}


@cache
def config_example() -> dict[str, Any]:
    return tomllib.loads(CONFIG_EXAMPLE.read_text(encoding="utf-8"))


# -- kickstart ----------------------------------------------------------------------------------------------------

_KICKSTART_VARIABLE = re.compile(r"#\{([^}]*)\}")


@dataclass(frozen=True)
class Request:
    file: str
    index: int
    method: str
    url: str
    tenant_id: str | None
    body: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.file} requests[{self.index}] {self.method} {self.url}"


@dataclass(frozen=True)
class Kickstart:
    variables: dict[str, str]
    api_keys: list[dict[str, Any]]
    requests: list[Request]

    def find(self, method: str, url_prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.url.startswith(url_prefix)]

    def one(self, method: str, url_prefix: str) -> Request:
        found = self.find(method, url_prefix)
        assert len(found) == 1, f"expected one {method} {url_prefix}... request, found {len(found)}"
        return found[0]


def env_names(path: Path) -> set[str]:
    """The environment variables a kickstart file reads through #{ENV.NAME}."""
    return {
        name[4:] for name in _KICKSTART_VARIABLE.findall(path.read_text(encoding="utf-8")) if name.startswith("ENV.")
    }


def _substitute(value: Any, variables: Mapping[str, str], env: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        assert not re.search(r"[@&]\{", value), f"{where}: file includes are not used by these files"

        def replace(found: re.Match[str]) -> str:
            name = found.group(1).strip()
            if name == "UUID()":
                return str(uuid.uuid4())
            if name.startswith("ENV."):
                assert name[4:] in env, f"{where}: no value for #{{{name}}}"
                return env[name[4:]]
            assert name in variables, f"{where}: #{{{name}}} is not a variable defined before this point"
            return variables[name]

        return _KICKSTART_VARIABLE.sub(replace, value)
    if isinstance(value, list):
        return [_substitute(item, variables, env, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {key: _substitute(item, variables, env, f"{where}.{key}") for key, item in value.items()}
    return value


def load_kickstart(*paths: Path, env: Mapping[str, str] = PLAUSIBLE_ENV) -> Kickstart:
    """Kickstart files in order (a kickstart, then overlays), variables substituted as FusionAuth does."""
    variables: dict[str, str] = {}
    api_keys: list[dict[str, Any]] = []
    requests: list[Request] = []
    for path in paths:
        document = json.loads(path.read_text(encoding="utf-8"))  # kickstart allows no comments: plain JSON
        for name, raw in (document.get("variables") or {}).items():
            variables[name] = _substitute(raw, variables, env, f"{path.name} variables.{name}")
        for index, raw in enumerate(document.get("apiKeys") or []):
            api_keys.append(_substitute(raw, variables, env, f"{path.name} apiKeys[{index}]"))
        for index, raw in enumerate(document.get("requests") or []):
            request = _substitute(raw, variables, env, f"{path.name} requests[{index}]")
            requests.append(
                Request(
                    file=path.name,
                    index=index,
                    method=request["method"],
                    url=request["url"],
                    tenant_id=request.get("tenantId"),
                    body=request.get("body") or {},
                )
            )
    return Kickstart(variables, api_keys, requests)


# -- docker-compose.yml ---------------------------------------------------------------------------------------------

# $$ (a literal $), ${NAME}, ${NAME:-default}, ${NAME-default}, $NAME: the forms Compose interpolates.
_COMPOSE_VARIABLE = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def replace(found: re.Match[str]) -> str:
        if found.group(1):
            return "$"
        name = found.group(2) or found.group(5)
        value = env.get(name)
        operator, default = found.group(3), found.group(4)
        if operator == ":-":
            return value or default
        if operator == "-":
            return default if value is None else value
        # Compose would warn and substitute an empty string: a `docker compose up` that "works" half-configured.
        assert value is not None, f"${{{name}}} has no default, so a plain `docker compose up` leaves it empty"
        return value

    # Forms this reader does not know (${NAME:?error}, ${NAME:+alt}) are left over once the known ones are removed.
    assert "${" not in _COMPOSE_VARIABLE.sub("", text), f"unsupported interpolation in {text!r}"
    return _COMPOSE_VARIABLE.sub(replace, text)


def _interpolate_all(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return interpolate(value, env)
    if isinstance(value, list):
        return [_interpolate_all(item, env) for item in value]
    if isinstance(value, dict):
        return {key: _interpolate_all(item, env) for key, item in value.items()}
    return value


def load_compose(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """docker-compose.yml as `docker compose` sees it: YAML anchors resolved, then variables interpolated from `env`
    (default: none set, i.e. the defaults a plain `docker compose up` uses)."""
    document = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    interpolated: dict[str, Any] = _interpolate_all(document, env or {})
    return interpolated


def service_by_image(compose: Mapping[str, Any], *prefixes: str) -> tuple[str, dict[str, Any]]:
    found = [
        (name, service)
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith(prefixes) and "build" not in service
    ]
    assert len(found) == 1, f"expected one service with an image starting with {prefixes}, found {len(found)}"
    return found[0]


def built_service(compose: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    found = [(name, service) for name, service in compose["services"].items() if "build" in service]
    assert len(found) == 1, f"expected one service built from this repository, found {len(found)}"
    return found[0]


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    for name, value in raw.items():
        # YAML would turn an unquoted true or 9000 into a bool or an int, and Compose refuses booleans here.
        assert isinstance(value, str), f"environment {name} must be a quoted string, not {value!r}"
    return dict(raw)


@dataclass(frozen=True)
class PortMapping:
    host_ip: str | None
    published: int
    target: int


def ports(service: Mapping[str, Any]) -> list[PortMapping]:
    mappings = []
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        assert len(parts) in (2, 3), f"use the HOST:CONTAINER or IP:HOST:CONTAINER form, not {entry!r}"
        host_ip = parts[0] if len(parts) == 3 else None
        mappings.append(PortMapping(host_ip, int(parts[-2]), int(parts[-1].split("/")[0])))
    return mappings


# -- Dockerfile -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages() -> list[list[Instruction]]:
    """Instructions per build stage, continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments (the syntax directive too) and blank lines, also inside a continuation
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    stages: list[list[Instruction]] = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        assert stages, "the Dockerfile must start with FROM"
        stages[-1].append(Instruction(keyword.upper(), arguments.strip()))
    return stages


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]
