"""Security review of the storage back-ends.

Start-up errors: a storage.url or database.url whose password has a character that should have been percent-encoded
(a generated password with `/`, `@` or `%`, as base64 makes them). libpq and redis-py then parse part of the password
as a host, port or database name, or refuse the URL with a message that quotes it, and the start-up error (printed
to stderr, so to the container's log) would carry it.

The store failing in the middle of an operation: a session must not end without its refresh token being revoked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import JSON_HEADERS, make_settings, sign_in
from stepup_bff.auth.sessions import EndedSession, SessionManager, Tokens, User
from stepup_bff.cli import main
from stepup_bff.clock import SystemClock
from stepup_bff.errors import StoreUnavailable
from stepup_bff.settings import DatabaseSettings, StorageSettings
from stepup_bff.storage import StorageConfigError, open_database, open_store
from support.backends import RedisServer
from support.fake_fusionauth import TokenFactory
from support.live_server import free_port
from support.two_factor import VALID_CODE, FakeTwoFactor

PIECES = ("hunter2", "do-not-print")


def database_urls() -> list[str]:
    port = free_port()  # nothing listens there
    return [
        f"postgresql://stepup:hunter2/do-not-print@127.0.0.1:{port}/stepup",  # `/` ends the authority early
        f"postgresql://stepup:hunter2@do-not-print@127.0.0.1:{port}/stepup",  # `@` makes a host of the rest
        f"postgresql://stepup:hunter2%zzdo-not-print@127.0.0.1:{port}/stepup",  # not a percent-escape
        f"postgresql://stepup:hunter2-do-not-print@[::1:{port}/stepup",  # libpq quotes the whole URL
    ]


def store_urls() -> list[str]:
    port = free_port()
    return [
        f"redis://:hunter2/do-not-print@127.0.0.1:{port}/0",  # redis-py: "port ... 'hunter2'"
        f"redis://:hunter2-do-not-print@[::1:{port}/0",  # not even parsed
    ]


def assert_no_piece(message: str) -> None:
    for piece in PIECES:
        assert piece not in message, message


@pytest.mark.anyio
@pytest.mark.parametrize("url", database_urls())
async def test_database_url_errors_carry_no_piece_of_the_password(url: str) -> None:
    with pytest.raises(StorageConfigError) as raised:
        async with open_database(DatabaseSettings(url=url, connect_timeout=1.0)):
            pass

    assert str(raised.value).startswith("database.url: ")
    assert_no_piece(str(raised.value))


@pytest.mark.anyio
@pytest.mark.parametrize("url", store_urls())
async def test_storage_url_errors_are_one_message_with_no_piece_of_the_password(url: str) -> None:
    # Not a ValueError out of redis-py (a traceback from `serve`), but the one configuration error.
    with pytest.raises(StorageConfigError) as raised:
        async with open_store(StorageSettings(url=url, connect_timeout=0.5, timeout=0.5), SystemClock()):
            pass

    assert str(raised.value).startswith("storage.url: ")
    assert_no_piece(str(raised.value))


@pytest.mark.parametrize("setting", ["storage", "database"])
def test_serve_prints_one_line_and_no_piece_of_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], setting: str
) -> None:
    url = store_urls()[0] if setting == "storage" else database_urls()[0]
    sqlite = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[fusionauth]
url = "http://127.0.0.1:9"
api_key = "k"
application_id = "e9fdb985-9173-4e01-9d73-ac2d60d1dc8e"
client_secret = "s"
[session]
secret_keys = ["{"w" * 40}"]
[storage]
url = "{url if setting == "storage" else sqlite}"
connect_timeout = 0.5
[database]
url = "{url if setting == "database" else sqlite}"
connect_timeout = 1.0
"""
    )
    monkeypatch.chdir(tmp_path)

    assert main(["serve", "--config", str(config), "--port", str(free_port())]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"stepup-bff: {setting}.url: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert_no_piece(err)


@pytest.mark.live
def test_a_step_up_the_store_cannot_record_grants_nothing_and_keeps_the_session(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, redis_live: RedisServer
) -> None:
    client: TestClient = app_factory(make_settings(tmp_path, storage={"url": redis_live.url}))
    assert sign_in(client, fusionauth, tokens).status_code == 303
    two_factor = FakeTwoFactor(fusionauth)
    assert client.post("/api/step-up/start", json={}, headers=JSON_HEADERS).status_code == 200
    redis = redis_live.client()

    def answer_then_fill_redis(request: httpx.Request) -> httpx.Response:
        # Redis out of memory (maxmemory, noeviction) refuses SET but still serves GETDEL and DEL: the grant's
        # write, the first after FusionAuth's yes, fails.
        redis.config_set("maxmemory", 1)
        return two_factor.login(request)

    fusionauth["two_factor_login"].side_effect = answer_then_fill_redis
    try:
        response = client.post("/api/step-up/finish", json={"code": VALID_CODE}, headers=JSON_HEADERS)
    finally:
        redis.config_set("maxmemory", 0)

    assert (response.status_code, response.json()["error"]) == (503, "store_unavailable")
    assert "set-cookie" not in response.headers  # no stepped-up cookie went out
    session = client.get("/api/session").json()
    # Nothing half done: still signed in, not stepped up, and nothing was revoked.
    assert session["authenticated"] is True and session["step_up"]["active"] is False
    assert not fusionauth["revoke"].called


class _RefusesNewSessionRecords:
    """The real SQLite store, except that writing a session record fails as a Redis out of memory does (SET
    refused, GETDEL served): the backend failing in the one gap between taking the old record and writing the
    new one."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.refuse = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def set(self, key: str, value: str, ttl: float) -> None:
        if self.refuse and key.startswith("session:"):
            raise StoreUnavailable()
        await self._store.set(key, value, ttl)


@pytest.mark.anyio
async def test_a_rotation_whose_new_record_cannot_be_written_ends_the_session(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    ended: list[tuple[str | None, str]] = []

    async def on_end(session: EndedSession, reason: str) -> None:
        ended.append((session.refresh_token_id, reason))

    async with open_store(settings.storage, SystemClock()) as real:
        store = _RefusesNewSessionRecords(real)
        sessions = SessionManager(settings, store, SystemClock(), on_end=on_end)
        session = await sessions.create(User("u-1", "a@example.com", "A"), Tokens("access", "refresh", "rt-1"))
        store.refuse = True
        with pytest.raises(StoreUnavailable):
            await sessions.rotate(session, None)
        store.refuse = False
        # The old record is gone and no new one exists: the session has ended, and ended like every session ends,
        # its refresh token handed to the end hook (which revokes it) rather than left live at FusionAuth.
        assert ended == [("rt-1", "store_failure")]
        assert await sessions.load(sessions.set_cookie_header(session).split(";")[0].split("=", 1)[1]) is None
