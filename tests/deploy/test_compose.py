"""docker-compose.yml agrees with the kickstart, config.example.toml and the BFF's settings.

There is no Docker engine in CI, so the file is read the way Compose reads it (tests/deploy/files.py): anchors resolved,
${VAR:-default} interpolated with nothing set, exactly what a plain `docker compose up` uses. The FusionAuth
healthcheck, the piece that makes the BFF wait for kickstart, is run for real against the dev server.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import make_settings
from deploy.files import (
    COMPOSE,
    KICKSTART,
    ROOT,
    built_service,
    config_example,
    env_names,
    environment,
    load_compose,
    load_kickstart,
    ports,
    service_by_image,
)
from fusionauth_dev import create_dev_server
from stepup_bff.app import create_app
from stepup_bff.settings import DatabaseSettings, load_settings
from stepup_bff.storage import open_database
from support.backends import PostgresServer, postgres_bin
from support.dev_stack import running_stack
from support.live_server import serve

POSTGRES = ("postgres:",)
REDIS = ("redis:",)
FUSIONAUTH = ("fusionauth/fusionauth-app:",)
MAIL_CATCHERS = ("sj26/mailcatcher:", "axllent/mailpit:")
KICKSTART_SETTINGS = load_kickstart(KICKSTART)
INIT_SCRIPTS = ROOT / "docker" / "postgres-init"


def _tenant() -> dict[str, object]:
    tenant_id = KICKSTART_SETTINGS.variables["defaultTenantId"]
    tenant: dict[str, object] = KICKSTART_SETTINGS.one("PATCH", f"/api/tenant/{tenant_id}").body["tenant"]
    return tenant


def test_the_file_has_the_five_services_and_named_volumes() -> None:
    compose = load_compose()
    service_by_image(compose, *POSTGRES)
    service_by_image(compose, *REDIS)
    service_by_image(compose, *FUSIONAUTH)
    service_by_image(compose, *MAIL_CATCHERS)
    built_service(compose)
    assert len(compose["services"]) == 5
    declared = set(compose.get("volumes") or {})
    for service in compose["services"].values():
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            assert source.startswith(".") or source in declared, f"volume {source} is not declared"


def test_postgres_is_16_with_a_healthcheck_and_a_named_volume() -> None:
    _, db = service_by_image(load_compose(), *POSTGRES)
    assert db["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert any(not volume.startswith((".", "/")) for volume in db["volumes"])


def test_fusionauth_is_pinned_to_a_release_and_configured_like_the_official_compose() -> None:
    compose = load_compose()
    db_name, db = service_by_image(compose, *POSTGRES)
    _, fusionauth = service_by_image(compose, *FUSIONAUTH)
    tag = fusionauth["image"].rsplit(":", 1)[1]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin a release, not {tag!r}"
    env = environment(fusionauth)
    assert env["SEARCH_TYPE"] == "database"  # no OpenSearch service
    assert env["FUSIONAUTH_APP_RUNTIME_MODE"] == "development"
    assert env["FUSIONAUTH_APP_URL"] == "http://fusionauth:9011"
    assert env["DATABASE_URL"] == f"jdbc:postgresql://{db_name}:5432/fusionauth"
    db_env = environment(db)
    assert env["DATABASE_ROOT_USERNAME"] == db_env["POSTGRES_USER"]
    assert env["DATABASE_ROOT_PASSWORD"] == db_env["POSTGRES_PASSWORD"]
    assert env["DATABASE_USERNAME"] and env["DATABASE_PASSWORD"]
    assert fusionauth["depends_on"][db_name]["condition"] == "service_healthy"


def test_the_kickstart_directory_is_mounted_where_fusionauth_looks() -> None:
    _, fusionauth = service_by_image(load_compose(), *FUSIONAUTH)
    kickstart_file = PurePosixPath(environment(fusionauth)["FUSIONAUTH_APP_KICKSTART_FILE"])
    assert kickstart_file == PurePosixPath("/usr/local/fusionauth/kickstart/kickstart.json")
    mounts = [volume.split(":") for volume in fusionauth["volumes"]]
    source, target, *options = next(mount for mount in mounts if mount[1] == str(kickstart_file.parent))
    assert (COMPOSE.parent / source).resolve() / kickstart_file.name == KICKSTART
    assert options == ["ro"]


def test_fusionauth_gets_every_variable_the_kickstart_reads() -> None:
    _, fusionauth = service_by_image(load_compose(), *FUSIONAUTH)
    env = environment(fusionauth)
    for name in env_names(KICKSTART):
        assert env.get(name), f"kickstart.json reads #{{ENV.{name}}}, which FusionAuth's environment lacks"


def test_fusionauth_is_published_at_the_tenant_issuer() -> None:
    compose = load_compose()
    fusionauth_name, fusionauth = service_by_image(compose, *FUSIONAUTH)
    _, bff = built_service(compose)
    issuer = _tenant()["issuer"]
    assert environment(bff)["STEPUP_FUSIONAUTH__PUBLIC_URL"] == issuer
    parts = urlsplit(str(issuer))
    assert parts.hostname == "localhost"
    assert [(p.published, p.target) for p in ports(fusionauth)] == [(parts.port, 9011)]
    assert environment(bff)["STEPUP_FUSIONAUTH__URL"] == f"http://{fusionauth_name}:9011"


def test_every_published_port_is_on_loopback() -> None:
    # The secrets have well-known dev defaults: nothing here may be reachable from the network.
    for name, service in load_compose()["services"].items():
        for mapping in ports(service):
            assert mapping.host_ip == "127.0.0.1", f"{name} publishes {mapping.published} on every interface"


def test_the_mail_catcher_is_the_tenants_smtp_server() -> None:
    compose = load_compose()
    name, catcher = service_by_image(compose, *MAIL_CATCHERS)
    email = _tenant()["emailConfiguration"]
    assert isinstance(email, dict)
    assert email["host"] == name
    assert email["port"] == 1025
    assert "1025" in [str(port) for port in catcher.get("expose") or []]
    # Its web page: 1080 (mailpit serves 8025, so it would need mapping to 1080).
    assert any(mapping.published == 1080 for mapping in ports(catcher))


def test_the_bff_configuration_loads_from_its_environment_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    compose = load_compose()
    _, bff = built_service(compose)
    _, fusionauth = service_by_image(compose, *FUSIONAUTH)
    env = environment(bff)
    assert all(name.startswith("STEPUP_") for name in env), "the BFF is configured by STEPUP_* variables only"
    monkeypatch.chdir(tmp_path)  # no ./config.toml
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    example = config_example()
    assert settings.public_url == example["public_url"]
    assert settings.server.host == "0.0.0.0"  # noqa: S104 - inside a container, published on loopback only
    assert settings.server.port == example["server"]["port"]
    assert [(p.published, p.target) for p in ports(bff)] == [(example["server"]["port"], settings.server.port)]
    assert str(settings.fusionauth.application_id) == KICKSTART_SETTINGS.variables["applicationId"]
    fusionauth_env = environment(fusionauth)
    assert settings.fusionauth.api_key.get_secret_value() == fusionauth_env["FUSIONAUTH_BFF_API_KEY"]
    assert settings.fusionauth.client_secret.get_secret_value() == fusionauth_env["FUSIONAUTH_CLIENT_SECRET"]
    assert settings.fusionauth.api_key.get_secret_value() != fusionauth_env["FUSIONAUTH_ADMIN_API_KEY"]
    # Nothing lives in the BFF's container: state in Redis, records in PostgreSQL, so replicas can share them.
    assert settings.storage.url.startswith("redis://") and settings.database.url.startswith("postgresql://")
    assert "volumes" not in bff


def test_overridden_secrets_reach_both_sides() -> None:
    # Each secret is written once and aliased, so setting it in .env cannot leave FusionAuth and the BFF disagreeing.
    overrides = {
        "FUSIONAUTH_ADMIN_API_KEY": "override-admin-key-0123456789abcdef",
        "FUSIONAUTH_BFF_API_KEY": "override-bff-key-0123456789abcdef",
        "FUSIONAUTH_CLIENT_SECRET": "override-client-secret-0123456789",
        "BFF_SESSION_SECRET_KEY": "override-session-key-0123456789abcdefgh",
    }
    compose = load_compose(overrides)
    fusionauth = environment(service_by_image(compose, *FUSIONAUTH)[1])
    bff = environment(built_service(compose)[1])
    for name in ("FUSIONAUTH_ADMIN_API_KEY", "FUSIONAUTH_BFF_API_KEY", "FUSIONAUTH_CLIENT_SECRET"):
        assert fusionauth[name] == overrides[name]
    assert bff["STEPUP_FUSIONAUTH__API_KEY"] == overrides["FUSIONAUTH_BFF_API_KEY"]
    assert bff["STEPUP_FUSIONAUTH__CLIENT_SECRET"] == overrides["FUSIONAUTH_CLIENT_SECRET"]
    assert bff["STEPUP_SESSION__SECRET_KEYS"] == f'["{overrides["BFF_SESSION_SECRET_KEY"]}"]'


def test_the_default_secrets_say_they_are_for_development() -> None:
    compose = load_compose()
    fusionauth = environment(service_by_image(compose, *FUSIONAUTH)[1])
    bff = environment(built_service(compose)[1])
    for value in (
        fusionauth["FUSIONAUTH_ADMIN_API_KEY"],
        fusionauth["FUSIONAUTH_BFF_API_KEY"],
        fusionauth["FUSIONAUTH_CLIENT_SECRET"],
        bff["STEPUP_SESSION__SECRET_KEYS"],
    ):
        assert "dev-only" in value


def test_the_bff_starts_only_when_fusionauth_is_ready() -> None:
    compose = load_compose()
    fusionauth_name, fusionauth = service_by_image(compose, *FUSIONAUTH)
    _, bff = built_service(compose)
    assert bff["depends_on"][fusionauth_name]["condition"] == "service_healthy"
    test = fusionauth["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = test[1]
    assert "http://localhost:9011/api/status" in command
    # Healthy only once kickstart has created the BFF's key and application (see the next test).
    assert f"http://localhost:9011/api/application/{KICKSTART_SETTINGS.variables['applicationId']}" in command
    assert "${FUSIONAUTH_BFF_API_KEY}" in command  # $$ in the file: expanded by the container's shell


def test_every_long_running_service_has_a_healthcheck() -> None:
    compose = load_compose()
    for image in (POSTGRES, REDIS, FUSIONAUTH):
        assert service_by_image(compose, *image)[1]["healthcheck"]["test"]
    # The BFF's own: readiness here (below); its image's is liveness (tests/deploy/test_dockerfile.py).
    assert built_service(compose)[1]["healthcheck"]["test"]
    assert built_service(compose)[1]["build"] in (".", {"context": "."})
    assert (ROOT / "Dockerfile").is_file()


def _run_healthcheck(command: str, port: int, env: dict[str, str]) -> int:
    sh, curl = shutil.which("sh"), shutil.which("curl")
    if sh is None or curl is None:
        pytest.skip("sh and curl are needed to run FusionAuth's healthcheck (its image has both)")
    assert command.count("localhost:9011") == 2
    local = command.replace("localhost:9011", f"127.0.0.1:{port}")
    # The container's environment, as the healthcheck's shell sees it; the command is this repository's own.
    completed = subprocess.run(  # noqa: S603
        [sh, "-c", local], env={**env, "PATH": os.environ["PATH"]}, capture_output=True, timeout=30, check=False
    )
    return completed.returncode


@pytest.mark.live
def test_the_fusionauth_healthcheck_fails_until_kickstart_has_run() -> None:
    _, fusionauth = service_by_image(load_compose(), *FUSIONAUTH)
    command = fusionauth["healthcheck"]["test"][1]
    env = environment(fusionauth)
    # A FusionAuth that answers /api/status but has not run kickstart yet ...
    with serve(create_dev_server([]).app) as live:
        assert _run_healthcheck(command, live.port, env) != 0
    # ... and one that has, with the values compose passes.
    with serve(create_dev_server([KICKSTART], env=env).app) as live:
        assert _run_healthcheck(command, live.port, env) == 0


def _bff_healthcheck() -> list[str]:
    _, bff = built_service(load_compose())
    test: list[str] = bff["healthcheck"]["test"]
    return test


def test_the_bff_healthcheck_is_readiness() -> None:
    # Compose acts on health only through depends_on/--wait, which want "can serve"; it restarts on exit, never on
    # health. So readiness here, while the image's own HEALTHCHECK stays liveness (tests/deploy/test_dockerfile.py).
    test = _bff_healthcheck()
    assert test[:3] == ["CMD", "python", "-c"]
    _, bff = built_service(load_compose())
    assert f"http://127.0.0.1:{environment(bff)['STEPUP_SERVER__PORT']}/readyz" in test[3]


def _run_bff_healthcheck(port: int) -> int:
    command = [sys.executable, "-c", _bff_healthcheck()[3].replace("127.0.0.1:9000", f"127.0.0.1:{port}")]
    return subprocess.run(command, capture_output=True, timeout=30, check=False).returncode  # noqa: S603


@pytest.mark.live
def test_the_bff_healthcheck_passes_only_when_fusionauth_answers(tmp_path: Path) -> None:
    with running_stack(tmp_path / "up") as running:
        assert _run_bff_healthcheck(int(running.bff_url.rsplit(":", 1)[1])) == 0
    # FusionAuth does not answer: /healthz would still pass, /readyz does not.
    with serve(create_app(make_settings(tmp_path / "down"))) as live:
        assert httpx.get(f"{live.url}/healthz", timeout=5).status_code == 200
        assert _run_bff_healthcheck(live.port) != 0


# -- Redis and the BFF's own database ------------------------------------------------------------------------------


def test_the_bff_uses_the_compose_redis_with_its_password_and_waits_for_it() -> None:
    compose = load_compose({"REDIS_PASSWORD": "override-redis-password"})
    redis_name, redis = service_by_image(compose, *REDIS)
    _, bff = built_service(compose)
    storage = urlsplit(environment(bff)["STEPUP_STORAGE__URL"])
    assert (storage.scheme, storage.hostname, storage.port) == ("redis", redis_name, 6379)
    assert storage.password == environment(redis)["REDIS_PASSWORD"] == "override-redis-password"
    assert '--requirepass "$REDIS_PASSWORD"' in redis["command"][-1]
    assert "--appendonly yes" in redis["command"][-1]  # a restart keeps sessions and counters
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "ports" not in redis  # reached over the compose network only
    assert bff["depends_on"][redis_name]["condition"] == "service_healthy"
    assert "redis-cli ping" in redis["healthcheck"]["test"][1]


def test_the_bff_database_is_its_own_in_the_compose_postgres() -> None:
    overrides = {"BFF_DATABASE_USER": "bff", "BFF_DATABASE_PASSWORD": "override-db-password"}
    for env in ({}, overrides):
        compose = load_compose(env)
        db_name, db = service_by_image(compose, *POSTGRES)
        _, bff = built_service(compose)
        database = urlsplit(environment(bff)["STEPUP_DATABASE__URL"])
        db_env = environment(db)
        assert (database.hostname, database.port) == (db_name, 5432)
        # The role and database the init script creates, with the password it sets: never FusionAuth's.
        assert database.username == db_env["BFF_DATABASE_USER"] == database.path.lstrip("/")
        assert database.password == db_env["BFF_DATABASE_PASSWORD"]
        assert database.path != "/fusionauth" and database.username != db_env["POSTGRES_USER"]
        assert bff["depends_on"][db_name]["condition"] == "service_healthy"
    assert "dev-only" in environment(built_service(load_compose())[1])["STEPUP_DATABASE__URL"]
    _, db = service_by_image(load_compose(), *POSTGRES)
    init = next(volume for volume in db["volumes"] if ":/docker-entrypoint-initdb.d" in volume)
    assert init.endswith(":ro") and (ROOT / init.split(":")[0]).resolve() == INIT_SCRIPTS


@pytest.mark.live
def test_the_init_script_creates_the_database_the_bff_then_migrates(
    postgres_live: PostgresServer, tmp_path: Path
) -> None:
    """Run docker/postgres-init as the postgres image would (psql as the superuser on the local socket), then open
    the BFF's database.url from compose (host and port pointed at the test server) and migrate it."""
    compose = load_compose()
    _, db = service_by_image(compose, *POSTGRES)
    env = {
        **environment(db),
        "POSTGRES_USER": "postgres",  # the test server's superuser
        "PGHOST": str(postgres_live.socket_dir),
        "PGPORT": str(postgres_live.port),
        "PATH": f"{Path(postgres_bin('psql') or 'psql').parent}:{os.environ['PATH']}",
    }
    for script in sorted(INIT_SCRIPTS.glob("*.sh")):
        completed = subprocess.run(  # noqa: S603 - this repository's own script
            [shutil.which("sh") or "/bin/sh", str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
    url = urlsplit(environment(built_service(compose)[1])["STEPUP_DATABASE__URL"])
    local = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{postgres_live.port}").geturl()

    async def migrate() -> None:
        async with open_database(DatabaseSettings(url=local)) as database:
            await database.ping()

    asyncio.run(migrate())
