"""`stepup-bff serve` with a storage.url or database.url it cannot use: one message naming the setting, exit code 2,
no traceback, no password; checked before any socket is bound or worker started."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepup_bff.cli import main
from support.backends import PostgresServer, RedisServer
from support.live_server import free_port

SECRET = "hunter2-do-not-print"


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.chdir(tmp_path)  # no ./config.toml
    for name, value in {
        "STEPUP_FUSIONAUTH__URL": "http://127.0.0.1:9",
        "STEPUP_FUSIONAUTH__API_KEY": "k",
        "STEPUP_FUSIONAUTH__APPLICATION_ID": "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e",
        "STEPUP_FUSIONAUTH__CLIENT_SECRET": "s",
        "STEPUP_SESSION__SECRET_KEYS": '["' + "w" * 40 + '"]',
        "STEPUP_STORAGE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
        "STEPUP_DATABASE__URL": f"sqlite:///{tmp_path / 'store.sqlite3'}",
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _serve_fails(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and SECRET not in err
    assert err.count("\n") <= 3, err  # one message, not a dump
    return err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STEPUP_STORAGE__URL": f"memcached://:{SECRET}@cache:11211"}, "storage.url: must start with sqlite:///"),
        ({"STEPUP_DATABASE__URL": f"mysql://root:{SECRET}@db/stepup"}, "database.url: must start with sqlite:///"),
        ({"STEPUP_STORAGE__URL": f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"}, "storage.url: cannot use Redis at"),
        (
            {"STEPUP_DATABASE__URL": f"postgresql://stepup:{SECRET}@127.0.0.1:{free_port()}/stepup"},
            "database.url: cannot use PostgreSQL at 127.0.0.1",
        ),
    ],
)
def test_unusable_urls_stop_serve_with_one_message(
    serve_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    expected: str,
) -> None:
    assert expected in _serve_fails(capsys, monkeypatch, **env)


def test_an_sqlite_path_that_cannot_be_created(
    serve_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (serve_env / "file").write_text("not a directory")
    err = _serve_fails(capsys, monkeypatch, STEPUP_STORAGE__URL=f"sqlite:///{serve_env / 'file' / 'x.sqlite3'}")
    assert "storage.url: cannot open the SQLite database" in err


@pytest.mark.live
def test_a_missing_postgres_database_or_a_wrong_password(
    serve_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    postgres_live: PostgresServer,
    redis_live: RedisServer,
) -> None:
    postgres_live.create_database("cli")
    missing = _serve_fails(
        capsys,
        monkeypatch,
        STEPUP_STORAGE__URL=redis_live.url,
        STEPUP_DATABASE__URL=postgres_live.url("cli", dbname="no_such_db"),
    )
    assert "database.url: cannot use PostgreSQL at 127.0.0.1" in missing
    assert 'database "no_such_db" does not exist' in missing
    wrong = _serve_fails(capsys, monkeypatch, STEPUP_DATABASE__URL=postgres_live.url("cli", password=SECRET))
    assert "password authentication failed" in wrong
