"""Tokens at rest: whoever reads the store (the SQLite file, Redis's memory or its append-only file) gets no token,
and a sealed record opens only for its own session id under its own key."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import respx
from fastapi.testclient import TestClient

from conftest import make_settings, replace_cookie, sign_in
from stepup_bff.auth.sealing import Unsealable, open_sealed, seal
from stepup_bff.auth.sessions import SessionRecord, Tokens, _OpenedRecords, _seal_record
from stepup_bff.settings import Settings
from support.backends import RedisServer
from support.fake_fusionauth import TokenFactory

COOKIE_NAME = "stepup_session"


def _issued(fusionauth: respx.MockRouter) -> dict[str, Any]:
    issued: dict[str, Any] = fusionauth["token"].calls.last.response.json()
    return issued


def _every_byte_on_disk(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def _kv(settings: Settings) -> dict[str, str]:
    path = settings.storage.url.removeprefix("sqlite:///")
    return dict(sqlite3.connect(path).execute("SELECT key, value FROM kv").fetchall())


def _records(settings: Settings) -> dict[str, str]:
    return {key: value for key, value in _kv(settings).items() if key.startswith("stepup:session:{")}


def _authenticated(client: TestClient) -> bool:
    response = client.get("/api/session")
    assert response.status_code == 200
    return bool(response.json()["authenticated"])


# -- the format ------------------------------------------------------------------------------------------------------


def test_a_sealed_value_opens_only_with_its_session_id_and_key() -> None:
    sealed = seal("session-a", "session:{u1}:aaa", b"the tokens")
    assert sealed.startswith("v1.") and b"the tokens" not in sealed.encode()
    assert open_sealed("session-a", "session:{u1}:aaa", sealed) == b"the tokens"
    with pytest.raises(Unsealable):
        open_sealed("session-b", "session:{u1}:aaa", sealed)  # another session's id: another key
    with pytest.raises(Unsealable):
        open_sealed("session-a", "session:{u2}:aaa", sealed)  # moved under another key
    raw = bytearray(base64.urlsafe_b64decode(sealed[3:]))
    for index in (0, 12, len(raw) - 1):  # the nonce, the ciphertext, the tag: one bit of any of them
        altered = bytearray(raw)
        altered[index] ^= 0x01
        # Altered in the bytes, not in the base64 text: a flipped padding bit of the last character would decode to
        # the same bytes and prove nothing (this test once did that, and failed by chance).
        with pytest.raises(Unsealable):
            open_sealed("session-a", "session:{u1}:aaa", "v1." + base64.urlsafe_b64encode(altered).decode())
    with pytest.raises(Unsealable, match="unknown format"):
        open_sealed("session-a", "session:{u1}:aaa", "v9." + sealed[3:])
    with pytest.raises(Unsealable):
        open_sealed("session-a", "session:{u1}:aaa", "v1.not-base64!")
    assert seal("session-a", "k", b"x") != seal("session-a", "k", b"x")  # a fresh nonce every time


# -- SQLite ------------------------------------------------------------------------------------------------------------


def test_the_sqlite_file_holds_no_token(
    signed_in: TestClient, settings: Settings, fusionauth: respx.MockRouter
) -> None:
    issued = _issued(fusionauth)
    assert _authenticated(signed_in)
    on_disk = _every_byte_on_disk(Path(settings.storage.url.removeprefix("sqlite:///")).parent)
    for secret in (issued["access_token"], issued["refresh_token"], signed_in.cookies["stepup_session"]):
        assert secret.encode() not in on_disk
    (record,) = _records(settings).values()
    envelope = json.loads(record)
    # Readable: whose it is, and the refresh token's id, so any way of ending it can revoke the token.
    assert envelope["uid"] == issued["userId"] and envelope["rtid"] == issued["refresh_token_id"]
    assert envelope["sealed"].startswith("v1.")


def test_a_record_moved_under_another_session_is_refused_and_ended(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    settings = make_settings(tmp_path)
    victim: TestClient = app_factory(settings)
    assert sign_in(victim, fusionauth, tokens).status_code == 303
    victims_record = next(iter(_records(settings).items()))
    attacker: TestClient = app_factory(settings)
    assert sign_in(attacker, fusionauth, tokens).status_code == 303
    attackers_key = next(key for key in _records(settings) if key != victims_record[0])
    # Someone who can write to the store copies the victim's record under their own session's key.
    sqlite3.connect(settings.storage.url.removeprefix("sqlite:///"), isolation_level=None).execute(
        "UPDATE kv SET value = ? WHERE key = ?", (victims_record[1], attackers_key)
    )
    assert not _authenticated(attacker)
    assert attackers_key not in _records(settings)  # ended, not left behind
    assert _authenticated(victim)


def test_a_record_this_process_has_opened_is_refused_once_moved_or_altered(
    client: TestClient, settings: Settings, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    """The process keeps the records it has opened (auth/sessions._OpenedRecords), so this is the case that matters:
    both sessions have been read by this very process before their records change under it."""
    assert sign_in(client, fusionauth, tokens).status_code == 303
    victim = client.cookies[COOKIE_NAME]
    assert _authenticated(client)
    victims_key, victims_value = next(iter(_records(settings).items()))
    client.cookies.clear()
    assert sign_in(client, fusionauth, tokens).status_code == 303
    attacker = client.cookies[COOKIE_NAME]
    assert _authenticated(client)
    attackers_key = next(key for key in _records(settings) if key != victims_key)
    db = sqlite3.connect(settings.storage.url.removeprefix("sqlite:///"), isolation_level=None)
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (victims_value, attackers_key))
    assert not _authenticated(client)  # the attacker's cookie, the victim's record: refused and ended
    assert attackers_key not in _records(settings)
    replace_cookie(client, COOKIE_NAME, victim)
    assert _authenticated(client)
    # One byte of the victim's sealed record altered, after this process opened it unaltered.
    envelope = json.loads(victims_value)
    raw = bytearray(base64.urlsafe_b64decode(envelope["sealed"][3:]))
    raw[-1] ^= 0x01
    envelope["sealed"] = "v1." + base64.urlsafe_b64encode(raw).decode()
    db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(envelope), victims_key))
    assert not _authenticated(client)
    assert victims_key not in _records(settings)
    replace_cookie(client, COOKIE_NAME, attacker)
    assert not _authenticated(client)


def _record(user_id: str = "u1", last_seen: float = 2.0) -> SessionRecord:
    return SessionRecord(user_id=user_id, signed_in_at=1.0, last_seen=last_seen, tokens=Tokens("at", "rt", "rtid"))


def test_opened_records_are_kept_only_for_the_same_bytes_under_the_same_key_and_bounded() -> None:
    opened = _OpenedRecords(idle_timeout=100, absolute_timeout=1000, size=2)

    def open_(session_id: str, key: str, value: str) -> SessionRecord:
        return opened.open(session_id, key, value, now=3.0, read_at=opened.forgotten)

    value = _seal_record("sid-1", "session:{u1}:a", _record())
    first = open_("sid-1", "session:{u1}:a", value)
    assert first == _record()
    assert open_("sid-1", "session:{u1}:a", value) is first  # the same bytes: not opened again
    resealed = _seal_record("sid-1", "session:{u1}:a", _record())  # the same record, sealed again (a new nonce)
    second = open_("sid-1", "session:{u1}:a", resealed)
    assert second == first and second is not first
    with pytest.raises(Unsealable):  # the bytes it kept, under another key: opened, and refused
        open_("sid-1", "session:{u1}:b", value)
    with pytest.raises(Unsealable):  # the key it kept, with bytes that do not open
        open_("sid-1", "session:{u1}:a", value.replace('"uid":"u1"', '"uid":"u2"'))
    assert open_("sid-1", "session:{u1}:a", resealed) is second  # a refusal kept nothing in its place
    for name in ("c", "d", "e"):
        key = f"session:{{u1}}:{name}"
        open_(f"sid-{name}", key, _seal_record(f"sid-{name}", key, _record()))
    assert set(opened._entries) == {"session:{u1}:d", "session:{u1}:e"}  # bounded: the oldest left first
    opened.forget("session:{u1}:e")
    assert set(opened._entries) == {"session:{u1}:d"}


def test_opened_records_keep_nothing_read_before_a_forget_or_past_its_timeouts() -> None:
    opened = _OpenedRecords(idle_timeout=100, absolute_timeout=1000)
    key, value = "session:{u1}:a", _seal_record("sid-1", "session:{u1}:a", _record())
    read_at = opened.forgotten  # a request reads the record...
    opened.forget("session:{u1}:other")  # ...a session ends meanwhile...
    assert opened.open("sid-1", key, value, now=3.0, read_at=read_at) == _record()  # ...its answer is the same
    assert opened._entries == {}  # but it keeps nothing: it may have read a record that has just ended
    opened.open("sid-1", key, value, now=3.0, read_at=opened.forgotten)
    assert list(opened._entries) == [key]
    # Idle past its timeout (last seen at 2.0, idle timeout 100): the next use of the memo drops it.
    other = "session:{u1}:b"
    opened.open(
        "sid-2", other, _seal_record("sid-2", other, _record(last_seen=500.0)), now=102.0, read_at=opened.forgotten
    )
    assert list(opened._entries) == [other]
    # A record past the absolute timeout (signed in at 1.0), however recently seen, is not kept at all.
    opened.open(
        "sid-2", other, _seal_record("sid-2", other, _record(last_seen=999.0)), now=1001.0, read_at=opened.forgotten
    )
    assert opened._entries == {}


def test_a_records_tokens_are_not_in_its_repr() -> None:
    shown = repr(
        SessionRecord(user_id="u1", signed_in_at=1.0, last_seen=2.0, tokens=Tokens("eyJ.a.b", "opaque-rt", "rtid"))
    )
    assert "eyJ.a.b" not in shown and "opaque-rt" not in shown and "rtid" in shown


def test_altering_the_readable_refresh_token_id_is_refused(
    signed_in: TestClient, settings: Settings, fusionauth: respx.MockRouter
) -> None:
    ((key, value),) = _records(settings).items()
    envelope = json.loads(value)
    envelope["rtid"] = "someone-elses-token-id"
    sqlite3.connect(settings.storage.url.removeprefix("sqlite:///"), isolation_level=None).execute(
        "UPDATE kv SET value = ? WHERE key = ?", (json.dumps(envelope), key)
    )
    assert not _authenticated(signed_in)


def test_sign_out_revokes_by_the_readable_id_and_step_up_reseals_for_the_new_id(
    signed_in: TestClient, settings: Settings, fusionauth: respx.MockRouter
) -> None:
    from support.two_factor import VALID_CODE, FakeTwoFactor

    issued = _issued(fusionauth)
    FakeTwoFactor(fusionauth)
    headers = {"X-CSRF": "1"}
    assert signed_in.post("/api/step-up/start", json={}, headers=headers).status_code == 200
    before = set(_records(settings))
    assert signed_in.post("/api/step-up/finish", json={"code": VALID_CODE}, headers=headers).status_code == 200
    after = _records(settings)
    assert set(after).isdisjoint(before)  # a new key for the new session id, sealed for it
    assert _authenticated(signed_in)
    assert signed_in.post("/auth/logout", headers=headers).status_code == 200
    assert fusionauth["revoke"].calls.last.request.url.path == f"/api/jwt/refresh/{issued['refresh_token_id']}"


# -- Redis -------------------------------------------------------------------------------------------------------------


@pytest.mark.live
def _dump(redis: Any, key: str) -> str:
    """Everything a key holds, whatever its type (the session index is a hash and a sorted set)."""
    kind = redis.type(key)
    if kind == "hash":
        return str(redis.hgetall(key))
    if kind == "zset":
        return str(redis.zrange(key, 0, -1, withscores=True))
    return str(redis.get(key))


def test_redis_holds_no_token_in_memory_or_on_disk(
    app_factory: Any, tmp_path: Path, fusionauth: respx.MockRouter, tokens: TokenFactory, redis_live: RedisServer
) -> None:
    settings = make_settings(tmp_path, storage={"url": redis_live.url})
    client: TestClient = app_factory(settings)
    assert sign_in(client, fusionauth, tokens).status_code == 303
    assert _authenticated(client)
    issued = _issued(fusionauth)
    redis = redis_live.client()
    values = "".join(_dump(redis, key) for key in redis.keys("*"))
    (key,) = redis.keys("stepup:session:{*")
    assert key.startswith(f"stepup:session:{{{issued['userId']}}}:")  # the user id is the key's hash tag
    on_disk = _every_byte_on_disk(redis_live.directory)  # the append-only file has every write
    for secret in (issued["access_token"], issued["refresh_token"], client.cookies[COOKIE_NAME]):
        assert secret not in values
        assert secret.encode() not in on_disk
    assert issued["refresh_token_id"] in values  # readable by design, for revocation

    # A second session of the same user; the first one's record copied over it in Redis is refused.
    other: TestClient = app_factory(settings)
    assert sign_in(other, fusionauth, tokens).status_code == 303
    (other_key,) = set(redis.keys("stepup:session:{*")) - {key}
    redis.set(other_key, str(redis.get(key)), keepttl=True)
    assert not _authenticated(other)
    assert _authenticated(client)
