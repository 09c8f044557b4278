"""Kickstart files in FusionAuth's format (docs/fusionauth.md §9), for the dev server and for a running FusionAuth.

    load_kickstart([...files], env=...)   -> KickstartPlan   variables substituted, nothing applied yet
    apply_kickstart(plan, directory)      -> AppliedKickstart  every request through the management handlers

Several files load in order: the first is a normal kickstart (its first API key must be global), later ones are
overlays (``variables`` optional, ``requests``) that see the variables defined before them.

Substitution: ``#{name}`` (a variable defined earlier), ``#{ENV.NAME}`` (from ``env``; missing is an error naming it),
``#{UUID()}`` (a new UUID each time), and the built-ins ``FUSIONAUTH_APPLICATION_ID``, ``FUSIONAUTH_TENANT_ID``,
``FUSIONAUTH_DEFAULT_SIGNING_KEY_ID``. ``defaultTenantId`` sets the default tenant's id. Includes: ``@{file}`` inside a
string (the file's text) and ``&{file.json}`` as a whole value (the file's JSON). A backslash escapes a marker:
``\\#{x}`` stays ``#{x}``.

To send an overlay's requests to a running FusionAuth, see ``fusionauth_dev.remote_kickstart``
(``python -m fusionauth_dev apply``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusionauth_dev import management
from fusionauth_dev.directory import ADMIN_APPLICATION_ID, ApiKey, Directory
from fusionauth_dev.errors import FusionAuthError

logger = logging.getLogger(__name__)

_ALLOWED_METHODS = ("POST", "PUT", "PATCH")
_TOP_LEVEL = ("variables", "apiKeys", "requests", "licenseId", "license", "settings")
# `\\` before a marker is a literal backslash; `\` before a marker escapes it; then the markers themselves.
_TOKEN = re.compile(r"\\\\(?=[#@&]\{)|\\([#@&]\{)|#\{([^}]*)\}|@\{([^}]*)\}")
_WHOLE_JSON_INCLUDE = re.compile(r"^&\{([^}]*)\}$")

# The environment variables kickstart/kickstart.json reads; the dev command may generate them (see fill_missing).
KICKSTART_SECRETS = ("FUSIONAUTH_ADMIN_API_KEY", "FUSIONAUTH_BFF_API_KEY", "FUSIONAUTH_CLIENT_SECRET")
# kickstart.json's other #{ENV.*}: where FusionAuth sends the BFF's webhook (docker-compose: http://bff:9000/...).
KICKSTART_DEFAULTS = {"BFF_WEBHOOK_URL": "http://localhost:9000/webhooks/fusionauth"}


class KickstartError(Exception):
    """A kickstart file that cannot be loaded or applied; the message names the file and the place."""


@dataclass(frozen=True)
class KickstartRequest:
    method: str
    url: str
    body: dict[str, Any] | None
    tenant_id: str | None
    content_type: str | None
    source: str


@dataclass(frozen=True)
class KickstartApiKey:
    spec: dict[str, Any]
    source: str


@dataclass
class KickstartPlan:
    files: tuple[Path, ...]
    variables: dict[str, str]
    api_keys: list[KickstartApiKey]
    requests: list[KickstartRequest]
    default_tenant_id: str
    default_signing_key_id: str


@dataclass
class AppliedKickstart:
    # Passwords seen in user-creating requests, by user id: the dev banner shows them; the server keeps only hashes.
    passwords: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class _Substituter:
    def __init__(self, env: Mapping[str, str], variables: dict[str, str], base_dir: Path, file_label: str) -> None:
        self.env = env
        self.variables = variables
        self.base_dir = base_dir
        self.file_label = file_label

    def _fail(self, where: str, message: str) -> KickstartError:
        return KickstartError(f"{self.file_label}: {where}: {message}")

    def _include_path(self, name: str, where: str) -> Path:
        path = (self.base_dir / name.strip()).resolve()
        if not path.is_file():
            raise self._fail(where, f"the included file [{name}] does not exist ({path}).")
        return path

    def text(self, value: str, where: str) -> str:
        def replace(found: re.Match[str]) -> str:
            whole = found.group(0)
            if whole == "\\\\":
                return "\\"
            if found.group(1) is not None:
                return found.group(1)
            if found.group(3) is not None:
                path = self._include_path(found.group(3), where)
                return self.text(path.read_text(encoding="utf-8"), f"{where} (@{{{found.group(3)}}})")
            return self.variable(found.group(2).strip(), where)

        return _TOKEN.sub(replace, value)

    def variable(self, name: str, where: str) -> str:
        if name == "UUID()":
            return str(uuid.uuid4())
        if name.startswith("ENV."):
            env_name = name[4:]
            if env_name not in self.env:
                raise self._fail(where, f"#{{{name}}} needs the environment variable {env_name}, which is not set.")
            return self.env[env_name]
        if name not in self.variables:
            raise self._fail(where, f"#{{{name}}} is not a variable defined before this point.")
        return self.variables[name]

    def value(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            include = _WHOLE_JSON_INCLUDE.match(value)
            if include:
                path = self._include_path(include.group(1), where)
                try:
                    loaded = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError as exc:
                    raise self._fail(where, f"{path} is not valid JSON: {exc}") from exc
                return self.value(loaded, f"{where} (&{{{include.group(1)}}})")
            return self.text(value, where)
        if isinstance(value, list):
            return [self.value(item, f"{where}[{index}]") for index, item in enumerate(value)]
        if isinstance(value, dict):
            return {self.text(str(k), where): self.value(v, f"{where}.{k}") for k, v in value.items()}
        return value


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KickstartError(f"{path}: cannot read the kickstart file: {exc}") from exc
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        # Kickstart forbids comments; this is also where a stray comment ends up.
        raise KickstartError(f"{path}: not valid JSON (comments are not allowed): {exc}") from exc
    if not isinstance(document, dict):
        raise KickstartError(f"{path}: a kickstart file is a JSON object.")
    for name in document:
        if name not in _TOP_LEVEL:
            logger.warning("kickstart: %s: ignoring the unknown top-level key [%s]", path, name)
    return document


def load_kickstart(
    paths: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    builtins: Mapping[str, str] | None = None,
    unavailable: Sequence[str] = (),
) -> KickstartPlan:
    """Read and substitute kickstart files, in order. ``env`` defaults to ``os.environ``.

    ``builtins`` overrides built-in variables; ``unavailable`` names built-ins that must not be used (applying to a
    remote FusionAuth, whose default signing key id is unknown here).
    """
    environment: Mapping[str, str] = os.environ if env is None else env
    files = tuple(Path(p) for p in paths)
    documents = [(path, _read(path)) for path in files]
    variables: dict[str, str] = {}
    # defaultTenantId decides FUSIONAUTH_TENANT_ID, so it is resolved before any other variable.
    default_tenant_id: str | None = None
    for path, document in documents:
        raw = (document.get("variables") or {}).get("defaultTenantId")
        if raw is not None and default_tenant_id is None:
            default_tenant_id = _Substituter(environment, {}, path.parent, str(path)).text(
                str(raw), "variables.defaultTenantId"
            )
    signing_key_id = str(uuid.uuid4())
    known = {
        "FUSIONAUTH_APPLICATION_ID": ADMIN_APPLICATION_ID,
        "FUSIONAUTH_TENANT_ID": default_tenant_id or str(uuid.uuid4()),
        "FUSIONAUTH_DEFAULT_SIGNING_KEY_ID": signing_key_id,
    }
    known.update(builtins or {})
    withheld = set(unavailable) - ({"FUSIONAUTH_TENANT_ID"} if default_tenant_id else set())
    variables.update({name: value for name, value in known.items() if name not in withheld})
    api_keys: list[KickstartApiKey] = []
    requests: list[KickstartRequest] = []
    for path, document in documents:
        substituter = _Substituter(environment, variables, path.parent, str(path))
        raw_variables = document.get("variables") or {}
        if not isinstance(raw_variables, dict):
            raise KickstartError(f"{path}: variables must be an object.")
        for name, raw in raw_variables.items():
            variables[name] = substituter.text(str(raw), f"variables.{name}")
        for index, raw_key in enumerate(document.get("apiKeys") or []):
            where = f"apiKeys[{index}]"
            spec = substituter.value(raw_key, where)
            if not isinstance(spec, dict) or not spec.get("key"):
                raise KickstartError(f"{path}: {where}: an API key needs a [key].")
            api_keys.append(KickstartApiKey(spec=spec, source=f"{path} {where}"))
        for index, raw_request in enumerate(document.get("requests") or []):
            where = f"requests[{index}]"
            request = substituter.value(raw_request, where)
            if not isinstance(request, dict):
                raise KickstartError(f"{path}: {where}: a request is an object.")
            method = str(request.get("method", "")).upper()
            if method not in _ALLOWED_METHODS:
                raise KickstartError(f"{path}: {where}: method must be one of {_ALLOWED_METHODS}, not [{method}].")
            url = str(request.get("url", ""))
            if not url.startswith("/"):
                raise KickstartError(f"{path}: {where}: url must be a path such as /api/user, not [{url}].")
            body = request.get("body")
            if body is not None and not isinstance(body, dict):
                raise KickstartError(f"{path}: {where}: body must be a JSON object.")
            requests.append(
                KickstartRequest(
                    method=method,
                    url=url,
                    body=body,
                    tenant_id=request.get("tenantId"),
                    content_type=request.get("contentType"),
                    source=f"{path} {where}",
                )
            )
    return KickstartPlan(
        files=files,
        variables=variables,
        api_keys=api_keys,
        requests=requests,
        default_tenant_id=known["FUSIONAUTH_TENANT_ID"],
        default_signing_key_id=known["FUSIONAUTH_DEFAULT_SIGNING_KEY_ID"],
    )


def empty_plan() -> KickstartPlan:
    return KickstartPlan(
        files=(),
        variables={},
        api_keys=[],
        requests=[],
        default_tenant_id=str(uuid.uuid4()),
        default_signing_key_id=str(uuid.uuid4()),
    )


def apply_kickstart(plan: KickstartPlan, directory: Directory) -> AppliedKickstart:
    applied = AppliedKickstart()
    if not plan.api_keys:
        if plan.requests:
            raise KickstartError("kickstart: no apiKeys; FusionAuth runs no kickstart requests without an API key.")
        return applied
    for index, entry in enumerate(plan.api_keys):
        spec = entry.spec
        endpoints = (spec.get("permissions") or {}).get("endpoints")
        if index == 0 and (endpoints or spec.get("tenantId")):
            raise KickstartError(f"{entry.source}: the first API key must be global (no permissions, no tenantId).")
        data = {key: value for key, value in spec.items() if key != "description"}
        if index == 0:
            # [inferred] The primary key runs every request ("if you can do it with an API, you can do it in
            # Kickstart"), creating API keys included, which takes a key manager; an explicit false is respected.
            data.setdefault("keyManager", True)
        if spec.get("description"):
            data.setdefault("metaData", {"attributes": {}})["attributes"]["description"] = spec["description"]
        key_id = str(spec.get("id") or uuid.uuid4())
        try:
            data = management.api_key_json(directory, key_id, data)
        except FusionAuthError as exc:
            raise KickstartError(f"{entry.source}: invalid API key: {exc.body}") from exc
        directory.api_keys[key_id] = ApiKey(id=key_id, key=data["key"], data=data)
    primary = plan.api_keys[0].spec["key"]
    for request in plan.requests:
        try:
            status, payload = management.dispatch(
                directory,
                request.method,
                request.url,
                api_key=str(primary),
                body=request.body,
                tenant_id=request.tenant_id,
                content_type=request.content_type,
            )
        except management.UnknownRequest:
            logger.warning(
                "kickstart: skipping %s %s (%s): the development server does not implement this API",
                request.method,
                request.url,
                request.source,
            )
            applied.skipped.append(f"{request.method} {request.url}")
            continue
        except FusionAuthError as exc:
            raise KickstartError(
                f"{request.source}: {request.method} {request.url} failed with HTTP {exc.status_code}: "
                f"{json.dumps(exc.body) if exc.body is not None else '(empty body)'}"
            ) from exc
        password = ((request.body or {}).get("user") or {}).get("password")
        user_id = ((payload or {}).get("user") or {}).get("id")
        if status == 200 and password and user_id:
            applied.passwords[str(user_id)] = str(password)
    return applied


def fill_missing(env: Mapping[str, str], names: Sequence[str] = KICKSTART_SECRETS) -> tuple[dict[str, str], list[str]]:
    """A copy of ``env`` with a random value for each missing secret, and the names that were generated; and each
    missing non-secret setting of KICKSTART_DEFAULTS with its default."""
    filled = {**KICKSTART_DEFAULTS, **env}
    generated = [name for name in names if not filled.get(name)]
    for name in generated:
        filled[name] = secrets.token_urlsafe(32)
    return filled, generated


if __name__ == "__main__":
    # The command moved to ``python -m fusionauth_dev apply``: run as a script, this module (already imported by the
    # package) makes runpy warn. Say where it went rather than do nothing.
    raise SystemExit("use: python -m fusionauth_dev apply --url URL FILE...")
