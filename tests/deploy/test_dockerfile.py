"""The Dockerfile builds a non-root image of the BFF with a healthcheck that works; read, since CI has no engine."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from conftest import make_settings
from deploy.files import DOCKERIGNORE, ROOT, built_service, config_example, environment, final_stage, load_compose
from deploy.files import dockerfile_stages as stages
from stepup_bff.app import create_app
from support.live_server import free_port, serve


def _arguments(keyword: str) -> list[str]:
    return [instruction.arguments for instruction in final_stage() if instruction.keyword == keyword]


def _env() -> dict[str, str]:
    values: dict[str, str] = {}
    for arguments in _arguments("ENV"):
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            values[name] = value
    return values


def _healthcheck() -> list[str]:
    (healthcheck,) = _arguments("HEALTHCHECK")
    options, _, command = healthcheck.partition("CMD ")
    assert all(option.startswith("--") for option in options.split()), options
    argv: list[str] = json.loads(command)  # the exec form: no shell in the way
    return argv


def test_every_stage_is_a_slim_python_of_at_least_3_11() -> None:
    for stage in stages():
        image = stage[0].arguments.split()[0]
        found = re.fullmatch(r"python:3\.(\d+)-slim(-\w+)?", image)
        assert found and int(found.group(1)) >= 11, image


def test_the_package_is_installed_with_pip() -> None:
    runs = " ".join(
        instruction.arguments for stage in stages() for instruction in stage if instruction.keyword == "RUN"
    )
    assert "pip install ." in runs


def test_it_runs_as_an_unprivileged_user() -> None:
    keywords = [instruction.keyword for instruction in final_stage()]
    (user,) = _arguments("USER")
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert keywords.index("USER") < keywords.index("CMD")
    # The user is created in the image with a fixed, non-zero uid.
    runs = " ".join(_arguments("RUN"))
    created = re.search(rf"useradd\b[^&]*--uid (\d+)[^&]*\b{re.escape(user)}\b", runs)
    assert created and int(created.group(1)) >= 1000


def test_it_serves_on_the_configured_port() -> None:
    port = config_example()["server"]["port"]
    assert _arguments("EXPOSE") == [str(port)]
    assert _env()["STEPUP_SERVER__PORT"] == str(port)
    assert _env()["STEPUP_SERVER__HOST"] == "0.0.0.0"  # noqa: S104 - the container's own interface
    assert json.loads(_arguments("CMD")[0]) == ["stepup-bff", "serve"]


def test_the_single_page_app_is_where_the_bff_looks() -> None:
    # The wheel carries frontend/ as stepup_bff/frontend, where app.default_frontend_dir() looks first; so the build
    # stage must hold frontend/ before `pip install .` (hatchling fails on a missing force-include).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force_include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_include == {"frontend": "stepup_bff/frontend"}
    text = (ROOT / "Dockerfile").read_text()
    build_stage = text[: text.index("FROM", text.index("FROM") + 1)]
    assert "COPY frontend ./frontend" in build_stage
    assert build_stage.index("COPY frontend ./frontend") < build_stage.index("pip install .")
    assert "STEPUP_FRONTEND_DIR" not in _env()  # nothing to point at: the package has it
    assert (ROOT / "frontend" / "index.html").is_file()


def test_the_store_and_database_are_on_the_volume_the_user_owns() -> None:
    # On its own, the image keeps both in SQLite on /data (the default relative path would be under /app).
    for name in ("STEPUP_STORAGE__URL", "STEPUP_DATABASE__URL"):
        assert _env()[name].startswith("sqlite:////data/"), name
    assert json.loads(_arguments("VOLUME")[0]) == ["/data"]
    assert "chown stepup:stepup /data" in " ".join(_arguments("RUN"))
    # Compose overrides both with its Redis and PostgreSQL.
    bff = environment(built_service(load_compose())[1])
    assert bff["STEPUP_STORAGE__URL"].startswith("redis://")
    assert bff["STEPUP_DATABASE__URL"].startswith("postgresql://")


def test_every_copied_path_is_in_the_build_context() -> None:
    ignore = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and line[0] != "#"]
    # An allow-list: everything is excluded, then each needed path is let back in.
    assert ignore[0] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for stage in stages():
        for instruction in stage:
            if instruction.keyword != "COPY" or instruction.arguments.startswith("--from"):
                continue
            *sources, _ = shlex.split(instruction.arguments)
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
                assert (ROOT / source).exists()
    for secret in ("config.toml", ".env", ".venv", "data"):
        assert secret not in allowed


def _run(argv: list[str], port: int) -> int:
    # argv is this repository's own HEALTHCHECK; `python` is the image's interpreter, here the test's.
    command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    completed = subprocess.run(  # noqa: S603
        command, env={"STEPUP_SERVER__PORT": str(port)}, capture_output=True, timeout=30, check=False
    )
    return completed.returncode


def test_the_healthcheck_asks_healthz() -> None:
    # Liveness: runtimes that act on this status (Swarm) replace unhealthy containers, and a restart does not bring
    # FusionAuth back. Readiness (/readyz) is compose's healthcheck and the load balancer's.
    argv = _healthcheck()
    assert argv[:2] == ["python", "-c"]
    assert "/healthz" in argv[2] and "/readyz" not in argv[2]
    assert "STEPUP_SERVER__PORT" in argv[2]


@pytest.mark.live
def test_the_healthcheck_passes_against_a_running_bff_and_fails_without_one(tmp_path: Path) -> None:
    argv = _healthcheck()
    # This BFF's FusionAuth does not answer (not ready), and the container is still alive.
    with serve(create_app(make_settings(tmp_path))) as live:
        assert httpx.get(f"{live.url}/readyz", timeout=10).status_code == 503
        assert _run(argv, live.port) == 0
    assert _run(argv, free_port()) != 0
