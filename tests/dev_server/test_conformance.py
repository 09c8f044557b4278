"""The dev server held to FusionAuth's official Python client, over real HTTP (the client uses ``requests``).

Status codes and fields are the ones FusionAuth documents (docs/fusionauth.md); ``response.status`` /
``success_response`` /
``error_response`` are what the client exposes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fusionauth.fusionauth_client import FusionAuthClient
from jose import jwt

from fusionauth_dev import DevServer, ManualClock, create_dev_server, totp
from support.live_server import LiveServer, free_port, serve

from .conftest import (
    ADMIN_KEY,
    APPLICATION_ID,
    BFF_KEY,
    CLIENT_SECRET,
    EMAIL_OVERLAY,
    ENV,
    KICKSTART,
    PASSWORD,
    REDIRECT_URI,
    TENANT_ID,
    authorize_params,
    new_pkce,
    query_of,
)

pytestmark = pytest.mark.live

ALICE = "a11ce000-0000-4000-8000-000000000001"
BOB = "b0b00000-0000-4000-8000-000000000002"
ALICE_SECRET = "KnCWSYwMi0S4pr92R7iRpUyfDow="


@dataclass(frozen=True)
class Live:
    http: LiveServer
    dev: DevServer

    def client(self, api_key: str = BFF_KEY) -> FusionAuthClient:
        return FusionAuthClient(api_key, self.http.url)


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    dev = create_dev_server([KICKSTART, EMAIL_OVERLAY], env=ENV)
    with serve(dev.app) as http:
        yield Live(http, dev)


def test_start_send_and_complete_a_step_up(live: Live) -> None:
    client = live.client()
    state = {"action": "change-email", "session": "s-1"}
    started = client.start_two_factor_login(
        {"userId": BOB, "applicationId": APPLICATION_ID, "state": state, "trustChallenge": "tc"}
    )
    assert started.status == 200
    body: dict[str, Any] = started.success_response
    assert set(body) == {"code", "twoFactorId", "methods"}
    [email] = body["methods"]
    assert (email["method"], email["email"]) == ("email", "bob@example.com")
    sent = client.send_two_factor_code_for_login_using_method(body["twoFactorId"], {"methodId": email["id"]})
    assert sent.status == 200
    assert sent.success_response is None  # no body
    code = live.dev.outbox.last_code_for("bob@example.com")
    done = client.two_factor_login({"twoFactorId": body["twoFactorId"], "code": code, "applicationId": APPLICATION_ID})
    assert done.status == 200
    result: dict[str, Any] = done.success_response
    assert result["user"]["id"] == BOB
    assert result["state"] == state
    assert result["token"] and result["trustToken"]
    assert "access_token" in done.response.cookies  # what a BFF must not relay


def test_two_factor_login_421_and_404(live: Live) -> None:
    client = live.client()
    started = client.start_two_factor_login({"userId": ALICE}).success_response
    wrong = "000000" if started["code"] != "000000" else "111111"
    response = client.two_factor_login({"twoFactorId": started["twoFactorId"], "code": wrong})
    assert response.status == 421
    assert response.response.content == b""
    assert client.two_factor_login({"twoFactorId": "unknown", "code": "123456"}).status == 404
    totp_code = totp.code_at(ALICE_SECRET, live.dev.clock.now())
    assert client.two_factor_login({"twoFactorId": started["twoFactorId"], "code": totp_code}).status == 200


def test_start_with_a_wrong_key_is_401_and_unknown_user_404(live: Live) -> None:
    assert live.client("wrong-key").start_two_factor_login({"userId": ALICE}).status == 401
    missing = live.client().start_two_factor_login({"userId": "00000000-0000-4000-8000-000000000000"})
    assert missing.status == 404


def test_send_with_a_blank_method_is_400_errors_json(live: Live) -> None:
    client = live.client()
    started = client.start_two_factor_login({"userId": BOB}).success_response
    response = client.send_two_factor_code_for_login_using_method(started["twoFactorId"], {})
    assert response.status == 400
    assert response.error_response["fieldErrors"]["methodId"][0]["code"] == "[blank]methodId"


def test_login_returns_242_with_the_tenant_policy_enabled(live: Live) -> None:
    admin = live.client(ADMIN_KEY)
    enabled = admin.patch_tenant(TENANT_ID, {"tenant": {"multiFactorConfiguration": {"loginPolicy": "Enabled"}}})
    assert enabled.status == 200
    try:
        response = admin.login({"loginId": "alice@example.com", "password": PASSWORD, "applicationId": APPLICATION_ID})
        assert response.status == 242
        body = response.success_response
        assert body["twoFactorId"] and body["methods"][0]["method"] == "authenticator"
        done = admin.two_factor_login(
            {"twoFactorId": body["twoFactorId"], "code": totp.code_at(ALICE_SECRET, live.dev.clock.now())}
        )
        assert done.status == 200
        assert (
            admin.login({"loginId": "alice@example.com", "password": "nope", "applicationId": APPLICATION_ID}).status
            == 404
        )
    finally:
        admin.patch_tenant(TENANT_ID, {"tenant": {"multiFactorConfiguration": {"loginPolicy": "Disabled"}}})
    assert (
        admin.login({"loginId": "alice@example.com", "password": PASSWORD, "applicationId": APPLICATION_ID}).status
        == 200
    )


def _new_user(admin: FusionAuthClient, email: str, *, register: bool = True, **user: Any) -> str:
    """A user of its own, so that what a test does to it touches no other test on this module's server."""
    body = {"email": email, "password": PASSWORD, **user}
    if register:
        created = admin.register(
            {"user": body, "registration": {"applicationId": APPLICATION_ID}, "skipRegistrationVerification": True}
        )
    else:
        created = admin.create_user({"user": body})
    assert created.status == 200, created.error_response
    user_id: str = created.success_response["user"]["id"]
    return user_id


def test_login_statuses_through_the_client(live: Live) -> None:
    """Every Login API answer the BFF maps (docs/fusionauth.md §5), as FusionAuth's own client receives it."""
    admin = live.client(ADMIN_KEY)
    bff = live.client()  # the BFF's key, which kickstart allows POST /api/login

    def login(email: str, password: str = PASSWORD) -> Any:
        return bff.login({"loginId": email, "password": password, "applicationId": APPLICATION_ID})

    ok = login("dave@example.com")
    assert ok.status == 200 and ok.success_response["token"] and ok.success_response["user"]["id"]
    assert login("dave@example.com", "wrong-password").status == 404
    unknown = login("nobody@example.com")
    assert unknown.status == 404 and unknown.response.content == b""
    assert (
        live.client("")
        .login({"loginId": "dave@example.com", "password": PASSWORD, "applicationId": APPLICATION_ID})
        .status
        == 401
    )

    locked_id = _new_user(admin, "conformance-locked@example.com")
    assert admin.deactivate_user(locked_id).status == 200
    assert login("conformance-locked@example.com").status == 423
    assert admin.reactivate_user(locked_id).status == 200
    assert login("conformance-locked@example.com").status == 200

    change_id = _new_user(admin, "conformance-change@example.com")
    assert admin.patch_user(change_id, {"user": {"passwordChangeRequired": True}}).status == 200
    changing = login("conformance-change@example.com")
    assert changing.status == 203 and changing.success_response["changePasswordReason"] == "Administrative"

    _new_user(admin, "conformance-unregistered@example.com", register=False)
    assert login("conformance-unregistered@example.com").status == 202

    expired_id = _new_user(admin, "conformance-expired@example.com")
    assert admin.patch_user(expired_id, {"user": {"expiry": 1}}).status == 200
    assert login("conformance-expired@example.com").status == 410

    # Five wrong passwords trip the tenant's lockout action (kickstart): 409 with the actions.
    _new_user(admin, "conformance-guessed@example.com")
    for _ in range(5):
        assert login("conformance-guessed@example.com", "wrong-password").status == 404
    prevented = login("conformance-guessed@example.com")
    assert prevented.status == 409 and prevented.response.json()["actions"][0]["actionId"]


def test_login_242_under_the_applications_policy_and_212_after_it(live: Live) -> None:
    admin = live.client(ADMIN_KEY)
    bff = live.client()
    user_id = _new_user(admin, "conformance-mfa@example.com")
    secret = "KnCWSYwMi0S4pr92R7iRpUyfDow="
    method = {"method": "authenticator", "secret": secret, "authenticator": {"algorithm": "HmacSHA1"}}
    assert admin.patch_user(user_id, {"user": {"twoFactor": {"methods": [method]}}}).status == 200
    assert (
        admin.patch_application(
            APPLICATION_ID, {"application": {"multiFactorConfiguration": {"loginPolicy": "Enabled"}}}
        ).status
        == 200
    )
    try:
        due = bff.login(
            {"loginId": "conformance-mfa@example.com", "password": PASSWORD, "applicationId": APPLICATION_ID}
        )
        assert due.status == 242
        assert set(due.success_response) == {"twoFactorId", "methods"}
        assert admin.patch_tenant(TENANT_ID, {"tenant": {"emailConfiguration": {"verifyEmail": True}}}).status == 200
        assert admin.patch_user(user_id, {"user": {"verified": False}}).status == 200
        done = bff.two_factor_login(
            {
                "twoFactorId": due.success_response["twoFactorId"],
                "code": totp.code_at(secret, live.dev.clock.now()),
                "applicationId": APPLICATION_ID,
            }
        )
        assert done.status == 212 and done.success_response["token"]
    finally:
        admin.patch_application(
            APPLICATION_ID, {"application": {"multiFactorConfiguration": {"loginPolicy": "Disabled"}}}
        )
        admin.patch_tenant(TENANT_ID, {"tenant": {"emailConfiguration": {"verifyEmail": False}}})


def test_enrolment_and_recovery_codes_through_the_client(live: Live) -> None:
    """docs/fusionauth.md §8 as FusionAuth's own client calls it: a secret, enabling an authenticator with a current
    code (421 for a wrong one), the first method's recovery codes (single use at /api/two-factor/login), and
    disabling a method with a current code or every method with a recovery code."""
    admin = live.client(ADMIN_KEY)
    bff = live.client()
    user_id = _new_user(admin, "conformance-enrol@example.com")
    generated = bff.generate_two_factor_secret()
    assert generated.status == 200
    secret = generated.success_response["secret"]
    assert generated.success_response["secretBase32Encoded"] == totp.secret_base32(secret)
    now = live.dev.clock.now
    wrong = bff.enable_two_factor(user_id, {"method": "authenticator", "secret": secret, "code": "000000"})
    assert wrong.status == 421 and wrong.response.content == b""
    enabled = bff.enable_two_factor(
        user_id, {"method": "authenticator", "secret": secret, "code": totp.code_at(secret, now()), "name": "Phone"}
    )
    assert enabled.status == 200
    recovery = enabled.success_response["recoveryCodes"]
    assert len(recovery) == 10
    assert bff.enable_two_factor("00000000-0000-4000-8000-000000000000", {"method": "authenticator"}).status == 404
    assert live.client("wrong-key").generate_two_factor_secret().status == 401

    [method] = admin.retrieve_user(user_id).success_response["user"]["twoFactor"]["methods"]
    assert (method["method"], method["name"]) == ("authenticator", "Phone") and "secret" not in method

    def step_up(code: str) -> int:
        started = bff.start_two_factor_login({"userId": user_id}).success_response
        status: int = bff.two_factor_login({"twoFactorId": started["twoFactorId"], "code": code}).status
        return status

    assert step_up(recovery[0]) == 200
    assert step_up(recovery[0]) == 421  # single use

    other = bff.generate_two_factor_secret().success_response["secret"]
    second = bff.enable_two_factor(
        user_id, {"method": "authenticator", "secret": other, "code": totp.code_at(other, now())}
    )
    assert second.status == 200 and second.success_response is None  # no body after the first method
    methods = admin.retrieve_user(user_id).success_response["user"]["twoFactor"]["methods"]
    first_id, second_id = (m["id"] for m in methods)
    assert bff.disable_two_factor(user_id, second_id, "000000").status == 421
    removed = bff.disable_two_factor(user_id, second_id, totp.code_at(other, now()))
    assert removed.status == 200
    # The JSON-body form (what the BFF sends, keeping the code out of URLs), with a recovery code: every method goes.
    all_gone = bff.disable_two_factor_with_request(user_id, {"methodId": first_id, "code": recovery[1]})
    assert all_gone.status == 200
    assert admin.retrieve_user(user_id).success_response["user"]["twoFactor"]["methods"] == []
    assert step_up(recovery[2]) == 421  # the codes went with the methods


def test_prompt_login_gives_a_fresh_auth_time_through_the_client() -> None:
    """docs/fusionauth.md §6.1: with an SSO session and no prompt the ID token keeps the first sign-in's auth_time; with
    prompt=login and max_age=0 the person signs in again and auth_time is that moment. A server of its own, on a clock
    this test moves (from now, so that the tokens' times are plausible to the verifying library)."""
    clock = ManualClock(float(int(time.time())))
    dev = create_dev_server([KICKSTART], env=ENV, clock=clock)
    with serve(dev.app) as http, httpx.Client(base_url=http.url, follow_redirects=False) as browser:
        live = Live(http, dev)
        anonymous = live.client("")

        def auth_time(location: str, pkce: Any) -> int:
            exchanged = anonymous.exchange_o_auth_code_for_access_token_using_pkce(
                query_of(location)["code"], REDIRECT_URI, pkce.verifier, APPLICATION_ID, CLIENT_SECRET
            )
            assert exchanged.status == 200
            return int(_verify(live, exchanged.success_response["id_token"])["auth_time"])

        pkce = new_pkce()
        form = {**authorize_params(pkce), "loginId": "dave@example.com", "password": PASSWORD}
        signed_in_at = auth_time(browser.post("/oauth2/authorize", data=form).headers["location"], pkce)
        assert signed_in_at == int(clock.now())
        clock.advance(90)
        reused = browser.get("/oauth2/authorize", params=authorize_params(pkce))
        assert reused.status_code == 302
        assert auth_time(reused.headers["location"], pkce) == signed_in_at
        asked = browser.get("/oauth2/authorize", params=authorize_params(pkce, prompt="login", max_age="0"))
        assert asked.status_code == 200 and 'name="password"' in asked.text
        again = browser.post("/oauth2/authorize", data=form)
        assert auth_time(again.headers["location"], pkce) == signed_in_at + 90


def _authorization_code(live: Live, verifier_challenge: Any) -> str:
    form = {**authorize_params(verifier_challenge), "loginId": "alice@example.com", "password": PASSWORD}
    response = httpx.post(f"{live.http.url}/oauth2/authorize", data=form, follow_redirects=False)
    assert response.status_code == 302
    return query_of(response.headers["location"])["code"]


def _verify(live: Live, token: str) -> dict[str, Any]:
    keys = live.client().retrieve_json_web_key_set().success_response["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        next(key for key in keys if key["kid"] == kid),
        algorithms=["RS256"],
        audience=APPLICATION_ID,
        issuer="http://localhost:9011",
        options={"verify_at_hash": False},
    )
    return claims


def test_code_exchange_refresh_and_revocation(live: Live) -> None:
    anonymous = live.client("")
    pkce = new_pkce()
    exchanged = anonymous.exchange_o_auth_code_for_access_token_using_pkce(
        _authorization_code(live, pkce), REDIRECT_URI, pkce.verifier, APPLICATION_ID, CLIENT_SECRET
    )
    assert exchanged.status == 200
    tokens = exchanged.success_response
    assert {"access_token", "expires_in", "id_token", "refresh_token", "refresh_token_id", "scope", "userId"} <= set(
        tokens
    )
    assert tokens["token_type"] == "Bearer" and tokens["userId"] == ALICE
    assert _verify(live, tokens["access_token"])["sub"] == ALICE
    assert _verify(live, tokens["id_token"])["nonce"] == "nonce-456"
    refreshed = anonymous.exchange_refresh_token_for_access_token(
        tokens["refresh_token"], APPLICATION_ID, CLIENT_SECRET
    )
    assert refreshed.status == 200
    assert _verify(live, refreshed.success_response["access_token"])["authenticationType"] == "REFRESH_TOKEN"
    validated = anonymous.validate_jwt(refreshed.success_response["access_token"])
    assert validated.status == 200 and validated.success_response["jwt"]["sub"] == ALICE
    revoked = live.client().revoke_refresh_token_by_id(tokens["refresh_token_id"])
    assert revoked.status == 200
    assert live.client().revoke_refresh_token_by_id(tokens["refresh_token_id"]).status == 404
    after = anonymous.exchange_refresh_token_for_access_token(tokens["refresh_token"], APPLICATION_ID, CLIENT_SECRET)
    assert after.status == 400
    assert after.error_response["error"] == "invalid_grant"


def test_code_exchange_with_a_wrong_secret_is_401(live: Live) -> None:
    pkce = new_pkce()
    response = live.client("").exchange_o_auth_code_for_access_token_using_pkce(
        _authorization_code(live, pkce), REDIRECT_URI, pkce.verifier, APPLICATION_ID, "wrong"
    )
    assert response.status == 401


def test_discovery_jwks_and_application(live: Live) -> None:
    anonymous = live.client("")
    config = anonymous.retrieve_open_id_configuration()
    assert config.status == 200
    assert config.success_response["issuer"] == "http://localhost:9011"
    assert config.success_response["token_endpoint"] == f"{live.http.url}/oauth2/token"
    jwks = anonymous.retrieve_json_web_key_set()
    assert jwks.status == 200
    assert all(key["kty"] == "RSA" and key["kid"] for key in jwks.success_response["keys"])
    application = live.client().retrieve_application(APPLICATION_ID)
    assert application.status == 200
    assert application.success_response["application"]["oauthConfiguration"]["clientSecret"] == CLIENT_SECRET
    assert live.client().retrieve_user(ALICE).status == 200  # reads a user's second factors (GET /api/factors)
    assert live.client().patch_tenant(TENANT_ID, {"tenant": {}}).status == 401  # not among the BFF key's endpoints
    assert live.client().delete_user(ALICE).status == 401


def test_public_key_api_through_the_client(live: Live) -> None:
    anonymous = live.client("")
    by_application = anonymous.retrieve_jwt_public_key_by_application_id(APPLICATION_ID)
    assert by_application.status == 200
    pem = by_application.success_response["publicKey"]
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    listed = anonymous.retrieve_jwt_public_keys()
    assert listed.status == 200
    jwks = anonymous.retrieve_json_web_key_set().success_response["keys"]
    assert set(listed.success_response["publicKeys"]) == {key["kid"] for key in jwks}
    [kid] = [kid for kid, value in listed.success_response["publicKeys"].items() if value == pem]
    by_kid = anonymous.retrieve_jwt_public_key(kid)  # the client sends ?kid=
    assert (by_kid.status, by_kid.success_response) == (200, {"publicKey": pem})
    assert anonymous.retrieve_jwt_public_key("no-such-kid").status == 404
    assert anonymous.retrieve_jwt_public_key_by_application_id("00000000-0000-4000-8000-000000000000").status == 404


def test_live_server_serves_any_asgi_app() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello"})

    with serve(app) as first:
        assert httpx.get(first.url).text == "hello"
    port = free_port()
    with serve(app, port=port) as second:
        assert second.port == port and httpx.get(f"{second.url}/x").text == "hello"
