"""Step-up bound to its transaction (issue 14): POST /api/telegrams, the default bound action, with FusionAuth mocked.

The challenge says what is being confirmed; a confirmation authorizes exactly the request it was started for, once;
any other field, a second use, an unbound step-up, another session: a fresh challenge for the request in hand."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
import respx
from fastapi import Depends
from fastapi.testclient import TestClient

from conftest import FakeClock, make_settings, replace_cookie, sign_in
from stepup_bff.app import create_app
from stepup_bff.auth.sessions import Session, StepUp, User
from stepup_bff.cli import main
from stepup_bff.deps import PrivilegedAction, ServicesDep, require_privileged_action, require_step_up
from stepup_bff.ops.metrics import Metrics
from stepup_bff.settings import ConfigError
from stepup_bff.storage import Telegram
from support.fake_fusionauth import TokenFactory
from support.metrics import sample_value
from support.step_up import TELEGRAM, challenge_of, confirm, confirm_transaction, post
from support.two_factor import AUTHENTICATOR, EMAIL, VALID_CODE, FakeTwoFactor


@pytest.fixture
def two_factor(fusionauth: respx.MockRouter) -> FakeTwoFactor:
    return FakeTwoFactor(fusionauth)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def counted(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, metrics: Metrics
) -> TestClient:
    """Signed in to an app that records its metrics into `metrics`."""
    client: TestClient = app_factory(settings, metrics)
    assert sign_in(client, fusionauth, tokens).status_code == 303
    return client


# RFC 9110 section 11.6.1 / 11.2: challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ], auth-param = token BWS
# "=" BWS ( token / quoted-string ). A strict reading of the whole header: anything left over is a syntax error.
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
AUTH_PARAM = re.compile(rf"({TOKEN})[ \t]*=[ \t]*({TOKEN}|{QUOTED})")


def parse_challenge(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Bearer", header
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = AUTH_PARAM.match(rest, position)
        assert match, f"not an auth-param at {rest[position:]!r}"
        name, value = match.groups()
        assert name not in params, f"{name} twice"
        params[name] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value
        position = match.end()
        separator = re.match(r"[ \t]*,[ \t]*", rest[position:])
        if position < len(rest):
            assert separator, f"no comma at {rest[position:]!r}"
            position += separator.end()
    return params


# -- the challenge -----------------------------------------------------------------------------------------------


def test_the_challenge_names_the_action_and_carries_the_transaction(signed_in: TestClient) -> None:
    response = post(signed_in, "/api/telegrams", TELEGRAM)
    body = challenge_of(response)
    assert body["action"] == "send_telegram" and body["max_age"] == 300
    transaction = body["transaction"]
    assert re.fullmatch(r"tx_[A-Za-z0-9_-]{22}", transaction["id"])
    assert transaction["summary"] == "singing telegram to Bob — “Happy birthday, sung by a baritone”"
    params = parse_challenge(response.headers["www-authenticate"])
    assert params == {
        "error": "insufficient_user_authentication",
        "error_description": "A second factor is required",
        "max_age": "300",
        "action": "send_telegram",
        "transaction_id": transaction["id"],
    }
    # The person's own text is in the JSON body only: never in a header.
    assert "Bob" not in response.headers["www-authenticate"]


def test_the_summary_shows_the_recipient_and_the_start_of_the_message_and_nothing_that_hides(
    signed_in: TestClient,
) -> None:
    tricky = {
        "recipient": 'Bob "the builder" \\ <b>\u202eevil',
        "message": "Happy birthday\r\nto you, happy birthday to you, happy birthday dear Bob, happy birthday to you!",
    }
    response = post(signed_in, "/api/telegrams", tricky)
    summary = challenge_of(response)["transaction"]["summary"]
    # The recipient in full (it is the payee), a bidi override shown as what it is, line breaks as spaces, and the
    # message cut at a word with an ellipsis.
    assert (
        summary == 'singing telegram to Bob "the builder" \\ <b>\ufffdevil — “Happy birthday to you, happy birthday…”'
    )
    header = parse_challenge(response.headers["www-authenticate"])
    assert set(header) == {"error", "error_description", "max_age", "action", "transaction_id"}


def test_each_refusal_is_its_own_transaction(signed_in: TestClient) -> None:
    first = challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))["transaction"]["id"]
    second = challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))["transaction"]["id"]
    assert first != second


# -- binding ------------------------------------------------------------------------------------------------------


def test_a_confirmed_telegram_is_sent_once_and_a_replay_gets_a_fresh_challenge(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    refused = post(signed_in, "/api/telegrams", TELEGRAM)
    transaction = challenge_of(refused)["transaction"]
    started = post(signed_in, "/api/step-up/start", {"transaction_id": transaction["id"]})
    assert started.status_code == 200
    assert started.json()["transaction"] == {**transaction, "action": "send_telegram"}
    # FusionAuth's state carries the transaction (for its message templates and the echo), and nothing secret.
    state = json.loads(fusionauth["two_factor_start"].calls.last.request.content)["state"]
    assert state["transaction"] == {"id": transaction["id"], "summary": transaction["summary"]}
    assert set(state) == {"challengeId", "session", "transaction"}

    finished = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert finished.status_code == 200
    # What it confirmed; and no elevation: a confirmation of one telegram authorizes nothing else.
    assert finished.json() == {"step_up": {"active": False}, "transaction": {**transaction, "action": "send_telegram"}}
    assert signed_in.get("/api/session").json()["step_up"] == {"active": False}

    sent = post(signed_in, "/api/telegrams", TELEGRAM)
    assert sent.status_code == 201, sent.text
    again = post(signed_in, "/api/telegrams", TELEGRAM)
    replay = challenge_of(again)
    assert replay["transaction"]["id"] != transaction["id"]
    assert replay["error_description"] == "That confirmation was used already. Confirm this request."
    assert [t["id"] for t in signed_in.get("/api/telegrams").json()["telegrams"]] == [sent.json()["id"]]


@pytest.mark.parametrize("changed", [{"recipient": "Mallory"}, {"message": "Happy birthday, sung by a tenor"}])
def test_a_changed_field_is_refused_with_a_fresh_challenge_and_voids_the_confirmation(
    counted: TestClient, two_factor: FakeTwoFactor, metrics: Metrics, changed: dict[str, str]
) -> None:
    assert confirm_transaction(counted, post(counted, "/api/telegrams", TELEGRAM)).status_code == 200
    other = challenge_of(post(counted, "/api/telegrams", {**TELEGRAM, **changed}))
    assert other["error_description"] == "What you confirmed differs from this request. Confirm this one."
    assert next(iter(changed.values())).split(",")[0] in other["transaction"]["summary"]
    # Transaction Authorization CS 2.6: a change of the data voids the confirmation, for the original too.
    challenge_of(post(counted, "/api/telegrams", TELEGRAM))
    assert counted.get("/api/telegrams").json()["telegrams"] == []
    refusals = {
        reason: sample_value(metrics, "stepup_bff_transaction_refusals_total", action="send_telegram", reason=reason)
        for reason in ("no_step_up", "mismatch", "used")
    }
    assert refusals == {"no_step_up": 1, "mismatch": 1, "used": 1}


def test_an_unbound_step_up_is_not_accepted_by_a_bound_action(signed_in: TestClient, two_factor: FakeTwoFactor) -> None:
    assert post(signed_in, "/api/step-up/start").status_code == 200  # no transaction_id
    finished = post(signed_in, "/api/step-up/finish", {"code": VALID_CODE})
    assert finished.json()["step_up"]["active"] is True  # it elevates the session for unbound actions...
    refused = challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))  # ...not for this one
    assert refused["transaction"]["summary"].startswith("singing telegram to Bob")


def test_concurrent_requests_riding_one_confirmation_pass_once(
    signed_in: TestClient, two_factor: FakeTwoFactor
) -> None:
    assert confirm_transaction(signed_in, post(signed_in, "/api/telegrams", TELEGRAM)).status_code == 200
    results: list[int] = []

    def send(n: int) -> None:
        results.append(post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": f"k-{n}"}).status_code)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [201] + [401] * 7
    assert len(signed_in.get("/api/telegrams").json()["telegrams"]) == 1


def test_the_idempotent_retry_matches_and_a_repeat_needs_no_new_confirmation(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    key = {"Idempotency-Key": "spa-1"}
    created = confirm(signed_in, TELEGRAM, **key)  # the 401, the step-up, the SPA's retry with the same key
    assert created.status_code == 201
    starts = fusionauth["two_factor_start"].call_count
    # The answer got lost and the SPA sends it once more: the original, without a step-up and without a second one.
    repeat = post(signed_in, "/api/telegrams", TELEGRAM, **key)
    assert repeat.status_code == 200 and repeat.json() == created.json()
    # The same key with another telegram: refused before any step-up could be spent on it.
    reused = post(signed_in, "/api/telegrams", {**TELEGRAM, "recipient": "Mallory"}, **key)
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"
    assert fusionauth["two_factor_start"].call_count == starts
    # A new key is a new telegram: it needs its own confirmation.
    challenge_of(post(signed_in, "/api/telegrams", TELEGRAM, **{"Idempotency-Key": "spa-2"}))


def test_a_transaction_is_confirmed_only_by_the_session_whose_request_was_refused(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, two_factor: FakeTwoFactor
) -> None:
    mine, other = app_factory(settings), app_factory(settings)
    sign_in(mine, fusionauth, tokens)
    sign_in(other, fusionauth, tokens)  # the same user, another browser
    transaction = challenge_of(post(mine, "/api/telegrams", TELEGRAM))["transaction"]
    stolen = post(other, "/api/step-up/start", {"transaction_id": transaction["id"]})
    assert stolen.status_code == 410 and stolen.json()["error"] == "transaction_expired"
    assert post(mine, "/api/step-up/start", {"transaction_id": transaction["id"]}).status_code == 200


def test_an_unconfirmed_transaction_expires(signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock) -> None:
    transaction = challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))["transaction"]
    clock.advance(300)  # step_up.challenge_ttl
    late = post(signed_in, "/api/step-up/start", {"transaction_id": transaction["id"]})
    assert late.status_code == 410 and late.json()["error"] == "transaction_expired"


def test_a_confirmation_expires_after_max_age_and_dies_with_the_session(
    signed_in: TestClient, two_factor: FakeTwoFactor, clock: FakeClock
) -> None:
    assert confirm_transaction(signed_in, post(signed_in, "/api/telegrams", TELEGRAM)).status_code == 200
    clock.advance(300)
    assert challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))["error_description"] == (
        "Your confirmation ran out. Confirm this request again."
    )
    assert confirm_transaction(signed_in, post(signed_in, "/api/telegrams", TELEGRAM)).status_code == 200
    confirmed_cookie = signed_in.cookies["stepup_session"]
    post(signed_in, "/auth/logout")
    replace_cookie(signed_in, "stepup_session", confirmed_cookie)
    gone = post(signed_in, "/api/telegrams", TELEGRAM)
    assert gone.status_code == 401 and gone.json()["error"] == "login_required"


def test_fusionauth_must_echo_the_transaction(
    signed_in: TestClient, fusionauth: respx.MockRouter, two_factor: FakeTwoFactor
) -> None:
    transaction = challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))["transaction"]
    assert post(signed_in, "/api/step-up/start", {"transaction_id": transaction["id"]}).status_code == 200
    for two_factor_id, state in two_factor.issued.items():
        two_factor.issued[two_factor_id] = {**state, "transaction": {"id": "tx_someone_elses_000000"}}
    assert post(signed_in, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 502
    challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))


# -- policy -------------------------------------------------------------------------------------------------------


def test_an_action_policy_sets_max_age_and_the_methods_offered(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    policy = {"actions": {"send_telegram": {"max_age": 60, "methods": ["authenticator"]}}}
    client = app_factory(make_settings(tmp_path, step_up=policy))
    FakeTwoFactor(fusionauth, methods=[AUTHENTICATOR, EMAIL])
    sign_in(client, fusionauth, tokens)
    refused = post(client, "/api/telegrams", TELEGRAM)
    body = challenge_of(refused)
    assert body["max_age"] == 60 and body["methods"] == ["authenticator"]
    assert parse_challenge(refused.headers["www-authenticate"])["max_age"] == "60"
    started = post(client, "/api/step-up/start", {"transaction_id": body["transaction"]["id"]})
    assert [m["method"] for m in started.json()["methods"]] == ["authenticator"]
    assert post(client, "/api/step-up/send", {"method_id": "MAIL"}).json()["error"] == "invalid_method"


def test_an_action_whose_methods_the_user_lacks_says_so(
    tmp_path: Path, app_factory: Any, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    client = app_factory(make_settings(tmp_path, step_up={"actions": {"send_telegram": {"methods": ["sms"]}}}))
    FakeTwoFactor(fusionauth, methods=[AUTHENTICATOR])
    sign_in(client, fusionauth, tokens)
    transaction = challenge_of(post(client, "/api/telegrams", TELEGRAM))["transaction"]
    started = post(client, "/api/step-up/start", {"transaction_id": transaction["id"]})
    assert started.status_code == 409 and started.json()["error"] == "no_second_factor"
    assert "sms" in started.json()["error_description"]


def test_a_route_names_an_undeclared_action_and_gets_the_defaults(
    settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    app = create_app(settings, clock=clock)

    @app.post("/api/export")
    async def export(session: Annotated[Session, Depends(require_step_up(action="export_data"))]) -> dict[str, str]:
        return {"ok": session.user.id}

    app.router.routes.insert(0, app.router.routes.pop())
    FakeTwoFactor(fusionauth)
    with TestClient(app, base_url="http://localhost:9000", follow_redirects=False) as client:
        sign_in(client, fusionauth, tokens)
        refused = post(client, "/api/export")
        assert challenge_of(refused)["action"] == "export_data" and "transaction" not in refused.json()
        assert parse_challenge(refused.headers["www-authenticate"])["action"] == "export_data"
        assert post(client, "/api/step-up/start").status_code == 200
        assert post(client, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
        assert post(client, "/api/export").status_code == 200
        assert post(client, "/api/export").status_code == 200  # the time window, not single-use


def _export_app(settings: Any, clock: FakeClock, metrics: Metrics, *, takes_event: bool) -> Any:
    """An app with a privileged route of a developer's own: POST /api/export stores a telegram as its action. With
    `takes_event` it hands its activity event to that write and then forgets to call done()."""
    app = create_app(settings, clock=clock, metrics=metrics)

    @app.post("/api/export")
    async def export(
        privileged: Annotated[PrivilegedAction, Depends(require_privileged_action(action="export_data"))],
        services: ServicesDep,
    ) -> dict[str, str]:
        telegram = Telegram(f"t{clock.now()}", privileged.session.user.id, "Archive", "Export", clock.now())
        activity = privileged.activity if takes_event else None
        await services.telegrams.create_telegram(telegram, None, activity=activity)
        return {"ok": "exported"}

    app.router.routes.insert(0, app.router.routes.pop())
    return app


@pytest.mark.parametrize("takes_event", [False, True], ids=["never-takes-the-event", "takes-it-and-forgets-done"])
def test_a_privileged_route_that_does_not_say_done_still_gets_its_event_once(
    settings: Any,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    takes_event: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A route that never takes its event has it written after it returns, in a transaction of its own; one that gave
    it to a write and did not call done() is not written a second time (the write had it), and the omission is
    logged. Either way the action has exactly one privileged_action event."""
    metrics = Metrics()
    FakeTwoFactor(fusionauth)
    app = _export_app(settings, clock, metrics, takes_event=takes_event)
    with TestClient(app, base_url="http://localhost:9000", follow_redirects=False) as client:
        sign_in(client, fusionauth, tokens)
        assert post(client, "/api/step-up/start").status_code == 200
        assert post(client, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
        assert post(client, "/api/export").status_code == 200
        kinds = [event["kind"] for event in client.get("/api/activity").json()["events"]]
    assert kinds.count("privileged_action") == 1, kinds
    assert sample_value(metrics, "stepup_bff_activity_events_total", kind="privileged_action") == (
        0 if takes_event else 1
    )
    forgot = [r for r in caplog.records if "did not call done()" in r.getMessage()]
    assert len(forgot) == (1 if takes_event else 0)


def test_a_privileged_actions_repr_names_neither_the_session_nor_its_grant() -> None:
    session = Session(
        id="sid-secret",
        user=User("u1", None, "U"),
        signed_in_at=0.0,
        expires_at=1.0,
        idle_expires_at=1.0,
        step_up=StepUp(at=0.0, until=1.0, method="authenticator", grant="grant-secret"),
    )
    text = repr(PrivilegedAction(session, None))
    assert "sid-secret" not in text and "grant-secret" not in text and "PrivilegedAction" in text


def test_a_misspelt_action_table_stops_the_app_and_serve(tmp_path: Path, fusionauth: respx.MockRouter) -> None:
    settings = make_settings(tmp_path, step_up={"actions": {"send_telegrams": {"max_age": 60}}})
    with pytest.raises(ConfigError, match="step_up.actions.send_telegrams: no route is guarded by this action"):
        with TestClient(create_app(settings)):
            pass


def test_serve_refuses_a_misspelt_action_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        "[fusionauth]\nurl = 'http://localhost:9011'\napi_key = 'k'\n"
        "application_id = 'e9fdb985-9173-4e01-9d73-ac2d60d1dc8e'\nclient_secret = 's'\n"
        "[session]\nsecret_keys = ['0123456789abcdef0123456789abcdef']\n"
        f"[storage]\nurl = 'sqlite:///{tmp_path}/s.sqlite3'\n[database]\nurl = 'sqlite:///{tmp_path}/s.sqlite3'\n"
        "[step_up.actions.send_telegrm]\nmax_age = 60\n"
    )
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert (
        "step_up.actions.send_telegrm: no route is guarded by this action "
        "(the actions are: add_factor, remove_factor, send_telegram)"
    ) in err
    assert "Traceback" not in err


def test_binding_an_action_whose_route_describes_no_transaction_stops_the_app(
    tmp_path: Path, fusionauth: respx.MockRouter
) -> None:
    settings = make_settings(tmp_path, step_up={"actions": {"export_data": {"bind_transaction": True}}})
    app = create_app(settings)

    @app.post("/api/export")
    async def export(session: Annotated[Session, Depends(require_step_up(action="export_data"))]) -> None:
        return None

    with pytest.raises(ConfigError, match="export_data.bind_transaction: this action's route does not describe"):
        with TestClient(app):
            pass


def test_setting_one_key_of_send_telegram_keeps_its_binding(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, step_up={"actions": {"send_telegram": {"max_age": 60}}})
    policy = settings.step_up.actions["send_telegram"]
    assert policy.bind_transaction is True and policy.max_age == 60
    with pytest.raises(ValueError, match="single_use cannot be false"):
        make_settings(tmp_path, step_up={"actions": {"send_telegram": {"single_use": False}}})
    with pytest.raises(ValueError, match="must not be longer than step_up.max_age"):
        make_settings(tmp_path, step_up={"actions": {"send_telegram": {"max_age": 301}}})


def test_refusals_waiting_for_a_confirmation_are_capped_per_user(signed_in: TestClient, clock: FakeClock) -> None:
    """Each refusal keeps a pending transaction in the store: a client cannot fill it by sending request after
    request."""
    for n in range(30):
        challenge_of(post(signed_in, "/api/telegrams", {**TELEGRAM, "message": f"number {n}"}))
    capped = post(signed_in, "/api/telegrams", TELEGRAM)
    assert capped.status_code == 429 and capped.json()["error"] == "too_many_pending"
    assert 0 < capped.json()["retry_after"] <= 300 and capped.headers["retry-after"]
    clock.advance(300)
    challenge_of(post(signed_in, "/api/telegrams", TELEGRAM))


def test_transactions_refused_together_stay_confirmable_after_one_step_up_rotates_the_session(
    signed_in: TestClient, two_factor: FakeTwoFactor
) -> None:
    """Two requests refused at once (two tabs, two telegrams): confirming the first gives the session a new id, and the
    second is still this sign-in's to confirm."""
    ann, ben = {**TELEGRAM, "recipient": "Ann"}, {**TELEGRAM, "recipient": "Ben"}
    refused_ann, refused_ben = post(signed_in, "/api/telegrams", ann), post(signed_in, "/api/telegrams", ben)
    before = signed_in.cookies["stepup_session"]
    assert confirm_transaction(signed_in, refused_ann).status_code == 200
    assert signed_in.cookies["stepup_session"] != before  # rotated
    assert post(signed_in, "/api/telegrams", ann).status_code == 201
    assert confirm_transaction(signed_in, refused_ben).status_code == 200
    assert post(signed_in, "/api/telegrams", ben).status_code == 201
