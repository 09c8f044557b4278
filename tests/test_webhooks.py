"""POST /webhooks/fusionauth: nothing but a valid signature of the configured webhook key over the raw body gets in
(every refusal is 401 with no effect and one log line), duplicates are recognised, unused types answered 2xx, and
each event FusionAuth sends ends what it must. FusionAuth is respx: its JWKS publishes the token-signing key
(key-1), the webhook key and a stranger (key-2)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from fastapi.testclient import TestClient
from jose import jwk, jws

from conftest import FakeClock, make_settings, sign_in
from stepup_bff.errors import StoreUnavailable
from stepup_bff.ops.metrics import Metrics
from stepup_bff.settings import StepUpSettings
from support.asgi import call
from support.fake_fusionauth import (
    APPLICATION_ID,
    OTHER_USER_ID,
    USER_ID,
    WEBHOOK_KID,
    TokenFactory,
    jwks,
    sign_webhook,
    signing_key,
    webhook_event,
)
from support.metrics import sample_value
from support.step_up import UNBOUND, post
from support.two_factor import VALID_CODE, FakeTwoFactor

PATH = "/webhooks/fusionauth"
COOKIE = "stepup_session"
SECRET = "an-hmac-webhook-secret-of-at-least-32-chars"


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def webhook_settings(tmp_path: Path) -> Any:
    return make_settings(tmp_path, fusionauth={"webhook_key_id": WEBHOOK_KID})


@pytest.fixture
def published(fusionauth: respx.MockRouter) -> respx.MockRouter:
    fusionauth["jwks"].respond(json=jwks("key-1", WEBHOOK_KID, "key-2"))
    return fusionauth


@pytest.fixture
def app(app_factory: Any, webhook_settings: Any, published: respx.MockRouter, metrics: Metrics) -> TestClient:
    client: TestClient = app_factory(webhook_settings, metrics)
    return client


def _browser(
    app_factory: Any, settings: Any, fusionauth: respx.MockRouter, tokens: TokenFactory, sub: str = USER_ID
) -> TestClient:
    """Another browser (and replica) of the same deployment, signed in as `sub`."""
    browser: TestClient = app_factory(settings)
    assert sign_in(browser, fusionauth, tokens, sub=sub).status_code == 303
    return browser


def _authenticated(browser: TestClient) -> bool:
    return bool(browser.get("/api/session").json()["authenticated"])


def _post(app: TestClient, body: bytes, signature: str | None, **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/json", **headers}
    if signature is not None:
        sent["X-FusionAuth-Signature-JWT"] = signature
    return app.post(PATH, content=body, headers=sent)


def _send(app: TestClient, document: dict[str, Any], **options: Any) -> httpx.Response:
    body = json.dumps(document).encode()
    return _post(app, body, sign_webhook(body, **options))


# -- refusals: 401, no effect, one log line --------------------------------------------------------------------------


def _tampered_signature(body: bytes) -> str:
    header, payload, signature = sign_webhook(body).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[10] ^= 0x01
    return ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()])


def _forged(algorithm: str, key: Any, kid: str = WEBHOOK_KID) -> Any:
    return lambda body: sign_webhook(body, kid=kid, algorithm=algorithm, key=key)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256_with_the_public_key(body: bytes) -> str:
    """The algorithm-confusion forgery: HS256 keyed with the RSA key's public PEM, which anyone can read in the JWKS
    (by hand: jose itself refuses to make one)."""
    pem = jwk.construct(signing_key(WEBHOOK_KID).public_jwk, "RS256").to_pem()
    header = _b64(json.dumps({"alg": "HS256", "kid": WEBHOOK_KID, "typ": "JWT"}).encode())
    claim = base64.b64encode(hashlib.sha256(body).digest()).decode()
    payload = _b64(json.dumps({"request_body_sha256": claim}).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _hex_hash(body: bytes) -> str:
    # The right hash, in the wrong encoding: FusionAuth's is standard base64 (docs/fusionauth.md §14).
    claim = hashlib.sha256(body).hexdigest()
    private = signing_key(WEBHOOK_KID).private_pem.decode()
    return jws.sign({"request_body_sha256": claim}, private, algorithm="RS256", headers={"kid": WEBHOOK_KID})


REFUSALS = {
    "no header": lambda body: None,
    "empty header": lambda body: "",
    "not a JWS": lambda body: "garbage",
    "bad signature": _tampered_signature,
    "another key in the JWKS": lambda body: sign_webhook(body, kid="key-2"),
    "the token-signing key": lambda body: sign_webhook(body, kid="key-1"),
    "a kid nobody publishes": lambda body: sign_webhook(body, kid="unknown-kid"),
    "another body": lambda body: sign_webhook(body + b" "),
    "the hash in hex": _hex_hash,
    "HS256 with the public key as secret": _hs256_with_the_public_key,
    "alg none": lambda body: (
        _b64(b'{"alg":"none","kid":"webhook-signing"}') + "." + sign_webhook(body).split(".")[1] + "."
    ),
    "HS256 with no secret configured": _forged("HS256", SECRET),
}


@pytest.mark.parametrize("forge", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_webhook_without_a_valid_signature_is_401_and_does_nothing(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    metrics: Metrics,
    caplog: pytest.LogCaptureFixture,
    forge: Any,
) -> None:
    browser = _browser(app_factory, webhook_settings, published, tokens)
    body = json.dumps(webhook_event("user.deactivate", created_at=clock.now())).encode()
    with caplog.at_level(logging.INFO, logger="stepup_bff"):
        response = _post(app, body, forge(body))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_signature"
    assert _authenticated(browser)  # no effect
    assert not published["revoke"].called
    lines = [r for r in caplog.records if r.name.startswith("stepup_bff") and r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "webhook refused" in lines[0].getMessage()
    assert body.decode() not in caplog.text  # neither the body ...
    assert sample_value(metrics, "stepup_bff_webhooks_total", event="unverified", outcome="refused") == 1


def test_the_token_signing_key_is_refused_even_when_configured_as_the_webhook_key(
    app_factory: Any, tmp_path: Path, published: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, fusionauth={"webhook_key_id": "key-1"})  # a mistake: the tokens' key
    browser = _browser(app_factory, settings, published, tokens)  # its tokens are signed with key-1
    response = _send(browser, webhook_event("user.deactivate", created_at=clock.now()), kid="key-1")
    assert response.status_code == 401
    assert _authenticated(browser)


def test_without_a_configured_key_every_webhook_is_refused(
    client: TestClient, published: respx.MockRouter, clock: FakeClock
) -> None:
    assert _send(client, webhook_event("user.deactivate", created_at=clock.now())).status_code == 401


def test_a_signature_header_sent_twice_is_refused(app: TestClient, clock: FakeClock) -> None:
    body = json.dumps(webhook_event("user.deactivate", created_at=clock.now())).encode()
    signature = sign_webhook(body)
    exchange = call(
        app,
        "POST",
        PATH,
        headers=[
            ("content-type", "application/json"),
            ("x-fusionauth-signature-jwt", signature),
            ("x-fusionauth-signature-jwt", signature),
        ],
        body=[body],
    )
    assert exchange.status == 401


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"event": "x"}', b'{"event": {"type": "user.delete"}}', b'{"event": {"id": "1"}}', b"\xff"],
    ids=["garbage", "an array", "no event object", "no id", "no type", "not UTF-8"],
)
def test_a_signed_body_that_is_not_an_event_is_400_and_does_nothing(
    app: TestClient, published: respx.MockRouter, body: bytes
) -> None:
    response = _post(app, body, sign_webhook(body))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not published["revoke"].called


def test_jwks_unreachable_is_503_not_accepted(app: TestClient, published: respx.MockRouter, clock: FakeClock) -> None:
    published["jwks"].mock(side_effect=httpx.ConnectError("down"))
    response = _send(app, webhook_event("user.deactivate", created_at=clock.now()))
    assert response.status_code == 503


def test_fusionauth_needs_no_csrf_header_but_only_that_path_is_let_through(app: TestClient, clock: FakeClock) -> None:
    document = webhook_event("user.login.success", created_at=clock.now())
    body = json.dumps(document).encode()
    # No X-CSRF, no Origin, no Sec-Fetch-Site: as FusionAuth sends it.
    assert _post(app, body, sign_webhook(body)).status_code == 200
    # Any other path, or a trailing slash, keeps the browser rules.
    other = app.post(PATH + "/", content=body, headers={"Content-Type": "application/json"})
    assert other.status_code == 403 and other.json()["error"] == "csrf_rejected"
    # And the body must still be JSON.
    assert _post(app, body, sign_webhook(body), **{"Content-Type": "text/plain"}).status_code == 415


def test_a_webhook_body_may_be_larger_than_an_api_body_but_is_bounded(app: TestClient, clock: FakeClock) -> None:
    document = webhook_event("user.login.success", created_at=clock.now())
    document["event"]["user"]["data"] = {"notes": "x" * 60_000}
    assert _send(app, document).status_code == 200
    document["event"]["user"]["data"] = {"notes": "x" * 300_000}
    assert _send(app, document).status_code == 413


# -- accepted: 2xx fast, once -----------------------------------------------------------------------------------------


def test_unused_event_types_are_answered_2xx_and_do_nothing(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    browser = _browser(app_factory, webhook_settings, published, tokens)
    for event_type in ("user.login.success", "user.reactivate", "user.email.update", "a.type.from.the.future"):
        response = _send(app, webhook_event(event_type, created_at=clock.now()))
        assert response.status_code == 200 and response.json() == {"received": True}
    assert _authenticated(browser)
    assert sample_value(metrics, "stepup_bff_webhooks_total", event="other", outcome="ignored") == 4


def test_a_duplicate_event_is_answered_2xx_and_applied_once(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    metrics: Metrics,
) -> None:
    _browser(app_factory, webhook_settings, published, tokens)
    document = webhook_event("user.deactivate", created_at=clock.now())
    assert _send(app, document).status_code == 200
    revoked = published["revoke"].call_count
    assert revoked == 1
    # A session the event would end, if it were applied again (signed in within the event's clock skew).
    again = _browser(app_factory, webhook_settings, published, tokens)
    assert _send(app, document).status_code == 200
    assert published["revoke"].call_count == revoked  # a duplicate: nothing more
    assert _authenticated(again)
    assert sample_value(metrics, "stepup_bff_webhooks_total", event="user.deactivate", outcome="duplicate") == 1
    assert sample_value(metrics, "stepup_bff_webhooks_total", event="user.deactivate", outcome="applied") == 1


def test_an_event_older_than_the_ids_remembered_is_ignored(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    browser = _browser(app_factory, webhook_settings, published, tokens)
    assert _send(app, webhook_event("user.deactivate", created_at=clock.now() - 2 * 86400)).status_code == 200
    assert _authenticated(browser)


def test_another_tenants_event_is_ignored(
    app_factory: Any, tmp_path: Path, published: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    settings = make_settings(
        tmp_path, fusionauth={"webhook_key_id": WEBHOOK_KID, "tenant_id": "11111111-1111-4111-8111-111111111111"}
    )
    browser = _browser(app_factory, settings, published, tokens)
    assert _send(browser, webhook_event("user.deactivate", created_at=clock.now())).status_code == 200
    assert _authenticated(browser)


def test_an_hmac_webhook_key_verifies_with_its_secret_and_nothing_else(
    app_factory: Any, tmp_path: Path, published: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    settings = make_settings(tmp_path, fusionauth={"webhook_key_id": WEBHOOK_KID, "webhook_secret": SECRET})
    browser = _browser(app_factory, settings, published, tokens)
    event = webhook_event("user.deactivate", created_at=clock.now())
    assert _send(browser, event, algorithm="RS256").status_code == 401  # the RSA key of that kid: not this key
    assert _send(browser, event, algorithm="HS256", key="another-secret-of-at-least-32-characters").status_code == 401
    assert _authenticated(browser)
    assert _send(browser, event, algorithm="HS256", key=SECRET).status_code == 200
    assert not _authenticated(browser)


# -- each event's effect ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("user.deactivate", "user_deactivated"),
        ("user.delete", "user_deleted"),
        ("user.delete.complete", "user_deleted"),
    ],
)
def test_a_deactivated_or_deleted_user_loses_every_session_at_once(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    metrics: Metrics,
    event_type: str,
    reason: str,
) -> None:
    mine = [_browser(app_factory, webhook_settings, published, tokens) for _ in range(2)]
    theirs = _browser(app_factory, webhook_settings, published, tokens, sub=OTHER_USER_ID)
    assert _send(app, webhook_event(event_type, created_at=clock.now())).status_code == 200
    assert [_authenticated(b) for b in mine] == [False, False]
    assert _authenticated(theirs)
    assert published["revoke"].call_count == 2  # each session's refresh token, by the end hook
    assert sample_value(metrics, "stepup_bff_sessions_ended_total", reason=reason) == 2
    services = app.app_state["services"]
    assert app.portal is not None
    events = app.portal.call(lambda: services.activity.recent(USER_ID, None, 10))
    ended = [e for e in events if e.kind == "session_ended"]
    assert len(ended) == 2 and all(f'"reason":"{reason}"' in e.detail for e in ended)


def test_an_event_ends_no_session_signed_in_after_it(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    created = clock.now()
    clock.advance(60)  # delivered late, or replayed: this sign-in came after the event
    later = _browser(app_factory, webhook_settings, published, tokens)
    assert (
        _send(
            app,
            webhook_event("jwt.refresh-token.revoke", created_at=created, userId=USER_ID, applicationId=APPLICATION_ID),
        ).status_code
        == 200
    )
    assert _authenticated(later)


def test_revoking_one_refresh_token_ends_the_session_holding_it(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    first = _browser(app_factory, webhook_settings, published, tokens)
    token_id = published["token"].calls.last.response.json()["refresh_token_id"]
    second = _browser(app_factory, webhook_settings, published, tokens)
    revoked = {"id": token_id, "userId": USER_ID, "applicationId": APPLICATION_ID, "token": "not-ours-to-log"}
    event = webhook_event(
        "jwt.refresh-token.revoke",
        created_at=clock.now(),
        userId=USER_ID,
        applicationId=APPLICATION_ID,
        refreshToken=revoked,
    )
    assert _send(app, event).status_code == 200
    assert [_authenticated(first), _authenticated(second)] == [False, True]


def test_revoking_a_users_tokens_ends_all_their_sessions_but_another_applications_revoke_ends_none(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    browsers = [_browser(app_factory, webhook_settings, published, tokens) for _ in range(2)]
    other_app = webhook_event(
        "jwt.refresh-token.revoke",
        created_at=clock.now(),
        userId=USER_ID,
        applicationId="22222222-2222-4222-8222-222222222222",
    )
    assert _send(app, other_app).status_code == 200
    assert all(_authenticated(b) for b in browsers)
    ours = webhook_event(
        "jwt.refresh-token.revoke", created_at=clock.now(), userId=USER_ID, applicationId=APPLICATION_ID
    )
    assert _send(app, ours).status_code == 200
    assert not any(_authenticated(b) for b in browsers)


def test_an_application_wide_revoke_is_left_to_each_sessions_next_refresh(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    browser = _browser(app_factory, webhook_settings, published, tokens)
    event = webhook_event("jwt.refresh-token.revoke", created_at=clock.now(), applicationId=APPLICATION_ID)
    del event["event"]["user"]
    assert _send(app, event).status_code == 200
    assert _authenticated(browser)
    published["refresh"].respond(400, json={"error": "invalid_grant"})  # FusionAuth revoked it
    clock.advance(3600)
    assert not _authenticated(browser)


@pytest.mark.parametrize(
    ("event_type", "reason"),
    [
        ("user.password.update", "password_changed"),
        ("user.password.reset.success", "password_changed"),
        ("user.two-factor.method.add", "factors_changed"),
        ("user.two-factor.method.remove", "factors_changed"),
    ],
)
def test_a_changed_password_or_second_factor_ends_the_other_sessions_and_voids_step_ups(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    metrics: Metrics,
    event_type: str,
    reason: str,
) -> None:
    FakeTwoFactor(published)
    # send_telegram in the time window (unbound): a step-up lets any number of telegrams through while fresh.
    unbound = webhook_settings.model_copy(update={"step_up": StepUpSettings(**UNBOUND)})
    author = _browser(app_factory, unbound, published, tokens)
    other = _browser(app_factory, unbound, published, tokens)
    assert post(author, "/api/step-up/start").status_code == 200
    assert post(author, "/api/step-up/finish", {"code": VALID_CODE}).status_code == 200
    assert post(author, "/api/telegrams", {"recipient": "Ann", "message": "Before"}).status_code == 201
    # The change was made here, by `author`, which ended the other sessions and was kept itself...
    services = author.app_state["services"]
    assert author.portal is not None
    session = author.portal.call(lambda: services.sessions.load(author.cookies[COOKIE]))
    author.portal.call(lambda: services.sessions.end_user_sessions(USER_ID, reason=reason, keep=session))
    assert not _authenticated(other)
    # ... and then FusionAuth's event about the same change arrives: the author's session lives on, stepped down.
    clock.advance(1)
    assert (
        _send(
            app, webhook_event(event_type, created_at=clock.now(), method={"id": "X1", "method": "authenticator"})
        ).status_code
        == 200
    )
    assert author.get("/api/session").json()["authenticated"] is True
    # Its step-up, completed before the change, counts no more: the privileged action asks again.
    refused = post(author, "/api/telegrams", {"recipient": "Bob", "message": "Hi"})
    assert refused.status_code == 401 and refused.json()["error"] == "insufficient_user_authentication"
    assert sample_value(metrics, "stepup_bff_webhooks_total", event=event_type, outcome="applied") == 1


def test_a_password_changed_at_fusionauth_ends_every_session_signed_in_before(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    browsers = [_browser(app_factory, webhook_settings, published, tokens) for _ in range(2)]
    assert _send(app, webhook_event("user.password.update", created_at=clock.now())).status_code == 200
    assert not any(_authenticated(b) for b in browsers)


@pytest.mark.parametrize(
    ("answer", "phase", "ends"),
    [
        (httpx.Response(200, json={"userAction": {"id": "A1", "preventLogin": True, "temporal": True}}), "start", True),
        (httpx.Response(200, json={"userAction": {"id": "A1", "preventLogin": False}}), "start", False),
        (httpx.Response(200, json={"userAction": {"id": "A1", "preventLogin": True}}), "cancel", False),
        (httpx.Response(404), "start", True),  # cannot tell: fail closed
        (httpx.Response(401), "start", True),
    ],
    ids=["prevents login", "a warning", "cancelled", "unknown action", "our key refused"],
)
def test_a_login_preventing_user_action_ends_the_users_sessions(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
    answer: httpx.Response,
    phase: str,
    ends: bool,
) -> None:
    published["user_action"].mock(return_value=answer)
    browser = _browser(app_factory, webhook_settings, published, tokens)
    event = webhook_event("user.action", created_at=clock.now(), actionId="A1", actioneeUserId=USER_ID, phase=phase)
    del event["event"]["user"]
    assert _send(app, event).status_code == 200
    assert _authenticated(browser) is not ends
    if phase == "start":
        assert published["user_action"].calls.last.request.headers["authorization"] == "test-api-key-0123456789"


def test_the_example_jsons_actionee_spelling_is_read_too(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    published["user_action"].respond(json={"userAction": {"preventLogin": True}})
    browser = _browser(app_factory, webhook_settings, published, tokens)
    event = webhook_event("user.action", created_at=clock.now(), actionId="A1", actioneeId=USER_ID, phase="start")
    del event["event"]["user"]
    assert _send(app, event).status_code == 200
    assert not _authenticated(browser)


def test_the_store_gone_while_applying_lets_a_redelivery_apply_it(
    app: TestClient,
    app_factory: Any,
    webhook_settings: Any,
    published: respx.MockRouter,
    tokens: TokenFactory,
    clock: FakeClock,
) -> None:
    browser = _browser(app_factory, webhook_settings, published, tokens)
    store = app.app_state["services"].store
    real = store.index_items

    async def failing(key: str) -> dict[str, str]:
        raise StoreUnavailable()

    store.index_items = failing
    document = webhook_event("user.deactivate", created_at=clock.now())
    assert _send(app, document).status_code == 200  # answered before the effect runs
    store.index_items = real
    assert _authenticated(browser)
    assert _send(app, document).status_code == 200  # FusionAuth's retry is not taken for a duplicate
    assert not _authenticated(browser)
