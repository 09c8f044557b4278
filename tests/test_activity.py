"""The security activity log (issue 14): the events a person's account gets, GET /api/activity, the hash chain and
`stepup-bff audit verify` after tampering, appends racing on one user across two PostgreSQL pools, no secret in any
stored row, and what happens when the database will not take an event."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import API_KEY, CLIENT_SECRET, SECRET_KEY, FakeClock, make_settings, sign_in
from stepup_bff.activity import ActivityLog, agent_label, verify_chain
from stepup_bff.activity.log import end_event
from stepup_bff.cli import main
from stepup_bff.ops.metrics import Metrics
from stepup_bff.settings import DatabaseSettings
from stepup_bff.storage import GENESIS, ActivityEvent, open_database
from support.backends import PostgresServer
from support.fake_fusionauth import USER_ID, TokenFactory
from support.metrics import sample_value
from support.step_up import TELEGRAM, challenge_of, confirm, confirm_transaction, post
from support.two_factor import VALID_CODE, FakeTwoFactor

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def rows(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return list(conn.execute("SELECT * FROM activity_events ORDER BY user_id, seq"))


def activity(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/activity", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def firefox(client: TestClient) -> TestClient:
    client.headers["User-Agent"] = FIREFOX
    return client


def test_a_session_leaves_an_event_for_each_thing_that_happened(
    firefox: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    FakeTwoFactor(fusionauth)
    assert sign_in(firefox, fusionauth, tokens).status_code == 303
    refused = post(firefox, "/api/telegrams", TELEGRAM)
    transaction = challenge_of(refused)["transaction"]["id"]
    assert post(firefox, "/api/step-up/start", {"transaction_id": transaction}).status_code == 200
    assert post(firefox, "/api/step-up/send", {"method_id": "MAIL"}).status_code == 200
    assert post(firefox, "/api/step-up/finish", {"code": "000000"}).status_code == 400
    clock.advance(5)
    assert post(firefox, "/api/step-up/finish", {"code": VALID_CODE, "method_id": "MAIL"}).status_code == 200
    assert post(firefox, "/api/telegrams", TELEGRAM).status_code == 201

    events = activity(firefox)["events"]
    assert [(e["kind"], e["outcome"]) for e in events] == [
        ("privileged_action", "success"),
        ("step_up_verified", "success"),
        ("step_up_wrong_code", "failure"),
        ("step_up_code_sent", "success"),
        ("step_up_started", "success"),
        ("sign_in", "success"),
    ]
    executed, verified, wrong, sent, started, signed_in = events
    assert executed["action"] == "send_telegram" and executed["transaction"] == transaction
    assert executed["method"] == "email"
    assert verified["transaction"] == transaction and verified["method"] == "email"
    assert wrong["attempts_remaining"] == 3
    assert sent["method"] == "email"
    assert started["methods"] == ["authenticator", "email"] and started["transaction"] == transaction
    assert signed_in["via"] == "hosted"
    assert [e["id"] for e in events] == [6, 5, 4, 3, 2, 1]
    assert {(e["agent"], e["address"]) for e in events} == {("Firefox on Linux", "testclient")}
    assert executed["at"] > signed_in["at"]
    assert "grant" not in executed  # the grant's reference stays in the log, for operators

    post(firefox, "/auth/logout")
    assert sign_in(firefox, fusionauth, tokens).status_code == 303
    assert [e["kind"] for e in activity(firefox)["events"][:2]] == ["sign_in", "sign_out"]


def test_the_grant_and_transaction_tie_the_confirmation_to_the_action(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, tmp_path: Path
) -> None:
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    assert confirm(client).status_code == 201
    details = {row[3]: json.loads(row[5]) for row in rows(tmp_path / "store.sqlite3")}
    assert details["privileged_action"]["grant"] == details["step_up_verified"]["grant"]
    assert details["privileged_action"]["grant"].startswith("g")
    assert details["privileged_action"]["transaction"] == details["step_up_verified"]["transaction"]


def test_the_log_pages_newest_first_with_an_opaque_cursor_and_shows_only_ones_own(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    for _ in range(5):
        sign_in(client, fusionauth, tokens)  # each new sign-in ends the one before: sign_in, session_ended...
    first = activity(client, limit=4)
    assert [e["id"] for e in first["events"]] == [9, 8, 7, 6] and first["next_cursor"]
    second = activity(client, limit=4, cursor=first["next_cursor"])
    assert [e["id"] for e in second["events"]] == [5, 4, 3, 2]
    last = activity(client, limit=4, cursor=second["next_cursor"])
    assert [e["id"] for e in last["events"]] == [1] and last["next_cursor"] is None
    assert {e["outcome"] for e in first["events"] if e["kind"] == "session_ended"} == {"replaced"}
    for cursor in ["nonsense!", "YTE6", "Zm9vOjE", "x" * 40]:
        assert client.get("/api/activity", params={"cursor": cursor}).status_code == 400, cursor

    sign_in(client, fusionauth, tokens, sub="00000000-0000-0000-0000-00000000b0b0")
    assert [e["kind"] for e in activity(client)["events"]] == ["sign_in"]  # someone else: only their own


def test_the_activity_log_needs_a_session(client: TestClient) -> None:
    response = client.get("/api/activity")
    assert response.status_code == 401 and response.json()["error"] == "login_required"


def test_timeouts_and_unknown_ways_to_end_a_session_are_recorded(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    sign_in(client, fusionauth, tokens)
    clock.advance(1800)  # session.idle_timeout
    assert client.get("/api/session").json()["authenticated"] is False
    sign_in(client, fusionauth, tokens)
    ended = activity(client)["events"][1]
    assert (ended["kind"], ended["outcome"], ended["reason"]) == ("session_ended", "timeout", "idle_timeout")
    # Reasons a later release adds (a FusionAuth webhook, "sign out everywhere") are recorded generically.
    assert end_event("webhook_user_deactivated") == ("session_ended", "ended", "webhook_user_deactivated")
    assert end_event("user deleted!\n") == ("session_ended", "ended", "other")
    assert end_event("sign_out") == ("sign_out", "success", "sign_out")


def test_no_event_holds_a_secret(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, tmp_path: Path
) -> None:
    two_factor = FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    session_cookie = client.cookies["stepup_session"]
    assert post(client, "/api/step-up/start").status_code == 200
    post(client, "/api/step-up/send", {"method_id": "MAIL"})
    post(client, "/api/step-up/finish", {"code": "987654"})
    assert confirm(client).status_code == 201
    post(client, "/auth/logout")
    stored = json.dumps(rows(tmp_path / "store.sqlite3"))
    session_ids = [cookie for cookie in (session_cookie, client.cookies.get("stepup_session")) if cookie]
    secrets = [*two_factor.secrets, VALID_CODE, "987654", API_KEY, CLIENT_SECRET, SECRET_KEY, *session_ids]
    refresh = json.loads(fusionauth["token"].calls.last.response.content)
    secrets += [refresh["access_token"], refresh["refresh_token"], refresh["refresh_token_id"], refresh["id_token"]]
    for secret in secrets:
        assert secret not in stored, f"{secret[:12]}... is in the activity log"
    # Nor the person's own words: the telegram's text stays in the telegram.
    assert "Happy birthday" not in stored and "Bob" not in stored


def test_the_log_admits_only_its_own_short_fields(tmp_path: Path, clock: FakeClock) -> None:
    async def run() -> None:
        async with open_database(DatabaseSettings(url=f"sqlite:///{tmp_path / 'db.sqlite3'}")) as database:
            log = ActivityLog(database, clock)
            for detail in ({"token": "eyJ..."}, {"method": "a" * 65}, {"method": "two words"}, {"methods": [1]}):
                with pytest.raises(ValueError):
                    await log.record(USER_ID, "step_up_verified", **detail)  # type: ignore[arg-type]
            # The API for a later enrolment feature.
            await log.second_factor_added(USER_ID, "authenticator")
            await log.second_factor_removed(USER_ID, "email")
            events = await log.recent(USER_ID, None, 10)
            assert [(e.kind, json.loads(e.detail)) for e in events] == [
                ("second_factor_removed", {"method": "email"}),
                ("second_factor_added", {"method": "authenticator"}),
            ]
            assert (events[0].address, events[0].agent) == (None, None)  # outside a request

    anyio.run(run)


@pytest.mark.parametrize(
    ("user_agent", "label"),
    [
        (FIREFOX, "Firefox on Linux"),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Safari/605.1.15",
            "Safari on macOS",
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Mobile/15E148 Safari/604.1",
            "Safari on iOS",
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
            "Safari/537.36 Edg/120.0.0.0",
            "Edge on Windows",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 "
            "Safari/537.36",
            "Chrome on Linux",
        ),
        ("curl/8.5.0", "curl"),
        ("", "an unknown browser"),
        (None, "an unknown browser"),
        ("<script>\r\n", "an unknown browser"),
    ],
)
def test_user_agents_get_a_short_plain_label(user_agent: str | None, label: str) -> None:
    assert agent_label(user_agent) == label


# -- the chain and its verification --------------------------------------------------------------------------------


@pytest.fixture
def logged(client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, tmp_path: Path) -> Path:
    """Two users' chains in the test's SQLite database; the path of a config file that names it."""
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    assert confirm(client).status_code == 201
    post(client, "/auth/logout")
    sign_in(client, fusionauth, tokens, sub="00000000-0000-0000-0000-00000000b0b0")
    config = tmp_path / "config.toml"
    config.write_text(
        "[fusionauth]\nurl = 'http://localhost:9011'\napi_key = 'k'\n"
        "application_id = 'e9fdb985-9173-4e01-9d73-ac2d60d1dc8e'\nclient_secret = 's'\n"
        "[session]\nsecret_keys = ['0123456789abcdef0123456789abcdef']\n"
        f"[database]\nurl = 'sqlite:///{tmp_path / 'store.sqlite3'}'\n"
    )
    return config


def tamper(db: Path, *statements: str) -> None:
    """What someone with write access to the file could do to USER_ID's chain (each statement's one `?`); the
    triggers that keep the table append-only go first."""
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER activity_events_no_update")
        conn.execute("DROP TRIGGER activity_events_no_delete")
        for statement in statements:
            conn.execute(statement, (USER_ID,))  # every statement is about the first user's chain


def verify(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["audit", "verify", "--config", str(config), *args])
    return code, capsys.readouterr().out


def test_audit_verify_passes_an_intact_log_and_prints_the_heads(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(logged, capsys, "--heads")
    assert code == 0, out
    assert out.endswith("✓ 2 chain(s), 6 event(s): intact\n")
    assert f"head user {USER_ID}: event 5 " in out


def test_the_table_refuses_updates_and_deletes(logged: Path) -> None:
    with sqlite3.connect(logged.parent / "store.sqlite3") as conn:
        for statement in ("UPDATE activity_events SET outcome = 'x'", "DELETE FROM activity_events"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)


@pytest.mark.parametrize(
    ("statements", "problems"),
    [
        # An edited event.
        (
            ["UPDATE activity_events SET outcome = 'failure' WHERE user_id = ? AND seq = 3"],
            ["3: does not match its hash (edited)"],
        ),
        # An event deleted from the middle.
        (
            ["DELETE FROM activity_events WHERE user_id = ? AND seq = 4"],
            ["4: event(s) 4 are missing (deleted)", "5: does not follow the event before it"],
        ),
        # Two events swapped (each keeps its hash, so their places give them away).
        (
            [
                "UPDATE activity_events SET seq = 100 WHERE user_id = ? AND seq = 2",
                "UPDATE activity_events SET seq = 2 WHERE user_id = ? AND seq = 3",
                "UPDATE activity_events SET seq = 3 WHERE user_id = ? AND seq = 100",
            ],
            ["2: does not follow the event before it", "2: does not match its hash (edited)"],
        ),
        # An event edited and its hash recomputed: the next event's link still names the old hash.
        (
            ["UPDATE activity_events SET hash = '" + "f" * 64 + "' WHERE user_id = ? AND seq = 2"],
            ["2: does not match its hash (edited)", "3: does not follow the event before it"],
        ),
    ],
    ids=["edited", "deleted", "reordered", "rehashed"],
)
def test_audit_verify_finds_tampering_and_exits_1(
    logged: Path, capsys: pytest.CaptureFixture[str], statements: list[str], problems: list[str]
) -> None:
    tamper(logged.parent / "store.sqlite3", *statements)
    code, out = verify(logged, capsys)
    assert code == 1, out
    for problem in problems:
        assert f"✗ user {USER_ID}, event {problem}" in out, out
    assert "break(s)" in out.splitlines()[-1]


def test_the_newest_events_removed_are_seen_only_against_kept_heads(
    logged: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The documented limit: a chain cut at its end is consistent; the head printed earlier shows what is gone."""
    _, before = verify(logged, capsys, "--heads")
    tamper(logged.parent / "store.sqlite3", "DELETE FROM activity_events WHERE user_id = ? AND seq = 5")
    code, after = verify(logged, capsys, "--heads")
    assert code == 0
    head = next(line for line in before.splitlines() if USER_ID in line)
    assert head not in after and f"head user {USER_ID}: event 4 " in after


def test_verify_chain_on_its_own() -> None:
    def event(seq: int, prev: str) -> ActivityEvent:
        from stepup_bff.activity import event_hash

        draft = ActivityEvent("u", seq, seq * 1000, "sign_in", "success", "{}", None, None, prev, "")
        return ActivityEvent(**{**draft.__dict__, "hash": event_hash(draft)})

    first = event(1, GENESIS)
    second = event(2, first.hash)
    assert verify_chain([first, second]) == []
    assert [str(b) for b in verify_chain([second])] == [
        "user u, event 1: event(s) 1 are missing (deleted)",
        "user u, event 2: does not follow the event before it (deleted or reordered)",
    ]


# -- PostgreSQL: appends racing on one user never fork the chain; the database refusing an event ----------------


@pytest.mark.live
def test_two_pools_appending_for_one_user_at_once_make_one_chain(postgres_url: str, clock: FakeClock) -> None:
    """Two connection pools, as two replicas have, each in its own thread and event loop, appending for one user at
    the same time: every event lands, seq 1..N without a gap, and the chain verifies."""
    per_pool = 25
    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def replica(name: str) -> None:
        async def run() -> None:
            async with open_database(DatabaseSettings(url=postgres_url, pool_size=4)) as database:
                log = ActivityLog(database, clock)
                barrier.wait()
                async with anyio.create_task_group() as group:
                    for _ in range(per_pool):
                        group.start_soon(lambda: log.record(USER_ID, "sign_in", via=name))

        try:
            anyio.run(run)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=replica, args=(name,)) for name in ("hosted", "native")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures

    async def read() -> list[list[ActivityEvent]]:
        async with open_database(DatabaseSettings(url=postgres_url)) as database:
            return [chain async for chain in database.activity_chains()]

    [chain] = anyio.run(read)
    assert [event.seq for event in chain] == list(range(1, 2 * per_pool + 1))
    assert verify_chain(chain) == []
    assert {json.loads(event.detail)["via"] for event in chain} == {"hosted", "native"}


@contextlib.contextmanager
def locked_activity(postgres_url: str) -> Iterator[None]:
    """Another session holds the activity table locked: every write to it waits until the statement timeout."""
    with psycopg.connect(postgres_url) as conn:
        conn.execute("LOCK TABLE activity_events IN ACCESS EXCLUSIVE MODE")
        yield
        conn.rollback()


def test_a_telegram_whose_event_the_database_refuses_is_not_sent_and_other_events_never_change_the_answer(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, tmp_path: Path
) -> None:
    """The telegram and its privileged_action event are one transaction: when the event cannot be written, the
    telegram is not stored either, and the answer is 503 (nothing was sent; trying again is safe). An event that
    rides no action of its own (a sign-out) is logged and counted instead, and its request goes on as if nothing
    happened. SQLite refuses the event through a trigger that fails as a broken database would."""
    metrics = Metrics()
    client: TestClient = app_factory(settings, metrics)
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    refused = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k"})
    assert confirm_transaction(client, refused).status_code == 200

    with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
        # json('{') fails with SQLITE_ERROR (an OperationalError), as an I/O error would: "unavailable", not a bug.
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON activity_events BEGIN SELECT json('{'); END")
    sent = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k"})
    assert sent.status_code == 503 and sent.json()["error"] == "database_unavailable", sent.text
    assert client.get("/api/telegrams").json()["telegrams"] == []
    assert not sample_value(metrics, "stepup_bff_activity_write_failures_total", kind="privileged_action")
    assert not sample_value(metrics, "stepup_bff_activity_events_total", kind="privileged_action")
    assert post(client, "/auth/logout").status_code in (200, 303)
    assert sample_value(metrics, "stepup_bff_activity_write_failures_total", kind="sign_out") == 1

    kinds = [row[3] for row in rows(tmp_path / "store.sqlite3")]
    assert kinds == ["sign_in", "step_up_started", "step_up_verified"]


@pytest.mark.live
def test_a_telegram_whose_event_postgres_will_not_take_is_not_sent_and_the_chain_stays_whole(
    tmp_path: Path,
    app_factory: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    postgres_live: PostgresServer,
    postgres_url: str,
) -> None:
    """The activity table is locked past the statement timeout: the telegram's transaction (telegram and event) is
    rolled back and answered 503, a sign-out meanwhile still signs out (its event is counted as lost), and the
    chain is whole afterwards. The same telegram then goes through with a new step-up, once."""
    metrics = Metrics()
    settings = make_settings(tmp_path, database={"url": postgres_url, "timeout": 1.0, "connect_timeout": 2.0})
    client: TestClient = app_factory(settings, metrics)
    FakeTwoFactor(fusionauth)
    sign_in(client, fusionauth, tokens)
    refused = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k"})
    assert confirm_transaction(client, refused).status_code == 200

    with locked_activity(postgres_url):
        sent = post(client, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "k"})
        assert sent.status_code == 503 and sent.json()["error"] == "database_unavailable", sent.text
        assert client.get("/api/telegrams").json()["telegrams"] == []
        assert post(client, "/auth/logout").status_code in (200, 303)
    assert sample_value(metrics, "stepup_bff_activity_write_failures_total", kind="sign_out") == 1
    assert not sample_value(metrics, "stepup_bff_activity_events_total", kind="privileged_action")

    sign_in(client, fusionauth, tokens)
    again = confirm(client, **{"Idempotency-Key": "k"})
    assert again.status_code == 201, again.text
    assert [t["id"] for t in client.get("/api/telegrams").json()["telegrams"]] == [again.json()["id"]]
    assert sample_value(metrics, "stepup_bff_activity_events_total", kind="privileged_action") == 1

    async def chains() -> list[list[ActivityEvent]]:
        async with open_database(DatabaseSettings(url=postgres_url)) as database:
            return [chain async for chain in database.activity_chains()]

    [chain] = anyio.run(chains)
    assert [event.kind for event in chain] == [
        "sign_in",
        "step_up_started",
        "step_up_verified",
        "sign_in",
        "step_up_started",
        "step_up_verified",
        "privileged_action",
    ]
    assert verify_chain(chain) == []
