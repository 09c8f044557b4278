"""Sign-in, session and sign-out through HTTP, with FusionAuth mocked by respx and real RS256 tokens."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
from fastapi.testclient import TestClient

from conftest import (
    API_KEY,
    CLIENT_SECRET,
    JSON_HEADERS,
    PUBLIC_URL,
    FakeClock,
    sign_in,
    start_login,
)
from support.fake_fusionauth import APPLICATION_ID, FA_PUBLIC_URL, USER_ID, TokenFactory, jwks


def test_login_redirects_to_fusionauth_with_pkce_state_and_nonce(client: TestClient) -> None:
    response = client.get("/auth/login", params={"return_to": "/telegrams"})

    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{FA_PUBLIC_URL}/oauth2/authorize"
    params = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert params["client_id"] == APPLICATION_ID
    assert params["redirect_uri"] == f"{PUBLIC_URL}/auth/callback"
    assert params["response_type"] == "code"
    assert params["scope"] == "openid offline_access profile email"
    assert params["code_challenge_method"] == "S256"
    assert len(params["state"]) >= 43 and len(params["nonce"]) >= 43
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Path=/auth/" in cookie and "SameSite=Lax" in cookie and "Max-Age=600" in cookie


def test_happy_path_login_session_logout(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    login = start_login(client, "/after?x=1")
    token_response = tokens.token_response(nonce=login.nonce)
    fusionauth["token"].respond(json=token_response)

    callback = client.get("/auth/callback", params={"code": "the-code", "state": login.state})

    assert callback.status_code == 303
    assert callback.headers["location"] == "/after?x=1"
    # The code exchange: verifier matching the challenge, our redirect URI, client authentication.
    sent = fusionauth["token"].calls.last.request
    form = {key: values[0] for key, values in parse_qs(sent.content.decode()).items()}
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "the-code"
    assert form["redirect_uri"] == f"{PUBLIC_URL}/auth/callback"
    challenge = base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest()).rstrip(b"=")
    assert challenge.decode() == login.code_challenge
    expected_basic = base64.b64encode(f"{APPLICATION_ID}:{CLIENT_SECRET}".encode()).decode()
    assert sent.headers["authorization"] == f"Basic {expected_basic}"

    session = client.get("/api/session").json()
    assert session["authenticated"] is True
    assert session["user"] == {"id": USER_ID, "email": "alice@example.com", "name": "Alice Example"}
    assert session["step_up"] == {"active": False}
    assert session["expires_at"] and session["idle_expires_at"]

    logout = client.post("/auth/logout", headers=JSON_HEADERS)
    assert logout.status_code == 200
    redirect = urlsplit(logout.json()["redirect"])
    assert f"{redirect.scheme}://{redirect.netloc}{redirect.path}" == f"{FA_PUBLIC_URL}/oauth2/logout"
    assert parse_qs(redirect.query) == {"client_id": [APPLICATION_ID], "post_logout_redirect_uri": [f"{PUBLIC_URL}/"]}
    # The refresh token was revoked by id, with the raw API key.
    revoke = fusionauth["revoke"].calls.last.request
    assert revoke.url.path == f"/api/jwt/refresh/{token_response['refresh_token_id']}"
    assert revoke.headers["authorization"] == API_KEY
    assert client.get("/api/session").json() == {"authenticated": False, "sign_in": ["hosted"]}


def test_session_cookie_attributes_and_contents(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    response = sign_in(client, fusionauth, tokens)

    session_cookie = next(h for h in response.headers.get_list("set-cookie") if h.startswith("stepup_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Path=/" in session_cookie
    value = session_cookie.split(";", 1)[0].split("=", 1)[1]
    payload = base64.urlsafe_b64decode(value.split(".", 1)[0] + "==")
    # The cookie is signed, not encrypted: it must never hold a token.
    assert b"refresh" not in payload and b"eyJ" not in payload
    assert len(session_cookie) < 1024


def test_secure_cookie_uses_host_prefix_on_https(
    app_factory: object, tmp_path: object, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    from conftest import make_settings

    settings = make_settings(tmp_path, public_url="https://app.example.com")  # type: ignore[arg-type]
    client: TestClient = app_factory(settings)  # type: ignore[operator]
    client.base_url = httpx.URL("https://app.example.com")
    login = start_login(client)
    login_cookie = client.get("/auth/login").headers["set-cookie"]
    # __Host-: a sibling subdomain cannot plant a pending sign-in (login CSRF), which forces Path=/.
    assert login_cookie.startswith("__Host-stepup_login_") and "Secure" in login_cookie and "Path=/;" in login_cookie
    fusionauth["token"].respond(json=tokens.token_response(nonce=login.nonce))
    response = client.get("/auth/callback", params={"code": "c", "state": login.state})
    session_cookie = next(h for h in response.headers.get_list("set-cookie") if "session" in h and "Max-Age=0" not in h)
    assert session_cookie.startswith("__Host-stepup_session=")
    assert "Secure" in session_cookie and "Path=/;" in session_cookie and "Domain" not in session_cookie


def test_two_tabs_signing_in_at_once_do_not_break_each_other(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    first = start_login(client, "/one")
    second = start_login(client, "/two")
    fusionauth["token"].respond(json=tokens.token_response(nonce=first.nonce))
    assert client.get("/auth/callback", params={"code": "a", "state": first.state}).headers["location"] == "/one"
    fusionauth["token"].respond(json=tokens.token_response(nonce=second.nonce))
    assert client.get("/auth/callback", params={"code": "b", "state": second.state}).headers["location"] == "/two"


def test_pending_logins_are_bounded(client: TestClient, clock: FakeClock) -> None:
    for _ in range(8):
        start_login(client)
        clock.advance(1)
    pending = [name for name in client.cookies.keys() if name.startswith("stepup_login_")]
    assert len(pending) == 5


@pytest.mark.parametrize(
    "return_to",
    [
        "https://evil.example",
        "//evil.example/path",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "http:/evil.example",
        "/" + "a" * 600,
    ],
)
def test_open_redirects_in_return_to_land_on_home(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, return_to: str
) -> None:
    response = sign_in(client, fusionauth, tokens, return_to=return_to)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def _callback_error(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    location = urlsplit(response.headers["location"])
    assert location.path == "/" and not location.netloc
    return parse_qs(location.query)["error"][0]


def _no_session(client: TestClient) -> None:
    assert client.get("/api/session").json()["authenticated"] is False


def test_state_mismatch_is_refused(client: TestClient, fusionauth: respx.MockRouter) -> None:
    start_login(client)
    response = client.get("/auth/callback", params={"code": "c", "state": "forged-state"})
    assert _callback_error(response) == "login_expired"
    assert not fusionauth["token"].called
    _no_session(client)


def test_replayed_callback_is_refused(client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory) -> None:
    login = start_login(client)
    login_cookies = dict(client.cookies.items())
    fusionauth["token"].respond(json=tokens.token_response(nonce=login.nonce))
    assert client.get("/auth/callback", params={"code": "c", "state": login.state}).status_code == 303
    client.post("/auth/logout", headers=JSON_HEADERS)

    # An attacker (or the back button) replays the same callback with the original login cookie.
    for name, value in login_cookies.items():
        client.cookies.set(name, value, path="/auth/")
    replay = client.get("/auth/callback", params={"code": "c", "state": login.state})
    assert _callback_error(replay) == "login_replayed"
    assert fusionauth["token"].call_count == 1
    _no_session(client)


def test_missing_login_state_cookie_is_refused(client: TestClient, fusionauth: respx.MockRouter) -> None:
    login = start_login(client)
    client.cookies.clear()
    response = client.get("/auth/callback", params={"code": "c", "state": login.state})
    assert _callback_error(response) == "login_expired"
    assert not fusionauth["token"].called


def test_expired_login_state_cookie_is_refused(
    client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    login = start_login(client)
    clock.advance(601)
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "login_expired"


def test_tampered_login_state_cookie_is_refused(client: TestClient, fusionauth: respx.MockRouter) -> None:
    login = start_login(client)
    name, value = next(iter(client.cookies.items()))
    client.cookies.set(name, value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/auth/")
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "login_expired"


@pytest.mark.parametrize(("error", "code"), [("access_denied", "access_denied"), ("server_error", "login_failed")])
def test_fusionauth_error_parameter(client: TestClient, fusionauth: respx.MockRouter, error: str, code: str) -> None:
    login = start_login(client)
    response = client.get("/auth/callback", params={"error": error, "state": login.state})
    assert _callback_error(response) == code
    assert not fusionauth["token"].called
    # The pending sign-in's cookie is dropped either way.
    assert any("Max-Age=0" in header for header in response.headers.get_list("set-cookie"))


def test_callback_without_code_is_refused(client: TestClient) -> None:
    assert _callback_error(client.get("/auth/callback")) == "invalid_request"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"nonce": "wrong-nonce"}, "nonce"),
        ({"iss": "http://evil.example"}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": None}, "no audience"),  # python-jose skips the check when the claim is absent
        ({"iss": None}, "no issuer"),
    ],
)
def test_bad_id_token_claims_are_refused(
    client: TestClient,
    fusionauth: respx.MockRouter,
    tokens: TokenFactory,
    caplog: pytest.LogCaptureFixture,
    claims: dict[str, str | None],
    reason: str,
) -> None:
    login = start_login(client)
    response = tokens.token_response(nonce=login.nonce)
    id_claims = {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": USER_ID,
        "iat": int(tokens.now),
        "exp": int(tokens.now) + 3600,
        "nonce": login.nonce,
        **claims,
    }
    response["id_token"] = tokens.sign({name: value for name, value in id_claims.items() if value is not None})
    fusionauth["token"].respond(json=response)

    callback = client.get("/auth/callback", params={"code": "c", "state": login.state})

    assert _callback_error(callback) == "invalid_token"
    _no_session(client)
    assert any("token rejected" in record.getMessage() for record in caplog.records)
    assert all(response["id_token"] not in record.getMessage() for record in caplog.records)


def test_expired_id_token_is_refused(client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock) -> None:
    login = start_login(client)
    stale = TokenFactory(now=clock.now() - 7200)  # issued two hours ago, valid for one
    fusionauth["token"].respond(json=stale.token_response(nonce=login.nonce))
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "invalid_token"
    _no_session(client)


def test_expiry_is_judged_by_our_clock_and_its_leeway_not_the_wall_clock(
    client: TestClient, fusionauth: respx.MockRouter, clock: FakeClock
) -> None:
    """A token that expired 30 s ago by the wall clock is within the 60 s of leeway our clock allows; one that has not
    expired by the wall clock has by ours once ours is two hours on."""
    clock.current = time.time()
    login = start_login(client)
    fusionauth["token"].respond(json=TokenFactory(now=clock.now() - 3630).token_response(nonce=login.nonce))
    assert client.get("/auth/callback", params={"code": "c", "state": login.state}).headers["location"] == "/"
    clock.advance(7200)
    login = start_login(client)
    fusionauth["token"].respond(json=TokenFactory(now=time.time()).token_response(nonce=login.nonce))
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "invalid_token"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _callback_with_forged_id_token(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, forge: Callable[[str, str], str]
) -> str:
    """Sign in with FusionAuth's answer carrying `forge(payload, nonce)` as the ID token; the error code."""
    login = start_login(client)
    response = tokens.token_response(nonce=login.nonce)
    _, payload, _ = response["id_token"].split(".")
    response["id_token"] = forge(payload, login.nonce)
    fusionauth["token"].respond(json=response)
    return _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state}))


def test_alg_none_is_refused(client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory) -> None:
    none_header = _b64(b'{"alg":"none","kid":"key-1"}')
    assert _callback_with_forged_id_token(
        client, fusionauth, tokens, lambda payload, _: f"{none_header}.{payload}."
    ) == ("invalid_token")


def test_hs256_signed_with_the_public_key_is_refused(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    import hmac as hmac_module
    import json

    from support.fake_fusionauth import signing_key

    # The classic confusion attack: HMAC keyed with the RSA public key, which anyone can download.
    public_jwk = json.dumps(signing_key("key-1").public_jwk).encode()
    header = _b64(b'{"alg":"HS256","kid":"key-1","typ":"JWT"}')

    def forge(payload: str, _: str) -> str:
        signature = hmac_module.new(public_jwk, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    assert _callback_with_forged_id_token(client, fusionauth, tokens, forge) == "invalid_token"


def test_token_signed_by_an_unknown_key_is_refused(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    login = start_login(client)
    response = tokens.token_response(nonce=login.nonce)
    # Signed by key-2, but the JWKS still publishes only key-1 (refetching does not help).
    access = tokens.access_token()
    response["access_token"] = access
    forged = TokenFactory(now=tokens.now, kid="key-2")
    response["id_token"] = forged.id_token(nonce=login.nonce, access_token=access)
    fusionauth["token"].respond(json=response)
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "invalid_token"


def test_signature_from_another_key_under_a_known_kid_is_refused(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    from support.fake_fusionauth import signing_key

    login = start_login(client)
    response = tokens.token_response(nonce=login.nonce)
    impostor = signing_key("impostor")
    claims = {
        "iss": tokens.issuer,
        "aud": tokens.audience,
        "sub": USER_ID,
        "exp": int(tokens.now) + 60,
        "iat": int(tokens.now),
        "nonce": login.nonce,
    }
    from jose import jwt

    response["id_token"] = jwt.encode(
        claims, impostor.private_pem.decode(), algorithm="RS256", headers={"kid": "key-1"}
    )
    fusionauth["token"].respond(json=response)
    assert _callback_error(client.get("/auth/callback", params={"code": "c", "state": login.state})) == "invalid_token"


def test_unknown_kid_refetches_jwks_after_key_rotation(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    assert sign_in(client, fusionauth, tokens).status_code == 303
    assert fusionauth["jwks"].call_count == 1

    # FusionAuth rotates to key-2. The first token under the new kid triggers exactly one refetch.
    fusionauth["jwks"].respond(json=jwks("key-1", "key-2"))
    rotated = TokenFactory(now=clock.now(), kid="key-2")
    clock.advance(31)
    assert sign_in(client, fusionauth, rotated).status_code == 303
    assert client.get("/api/session").json()["authenticated"] is True
    assert fusionauth["jwks"].call_count == 2


def test_unknown_kid_refetch_is_rate_limited(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory, clock: FakeClock
) -> None:
    assert sign_in(client, fusionauth, tokens).status_code == 303
    forged = TokenFactory(now=clock.now(), kid="made-up")
    for _ in range(5):
        login = start_login(client)
        fusionauth["token"].respond(json=forged.token_response(nonce=login.nonce))
        client.get("/auth/callback", params={"code": "c", "state": login.state})
    # Five forged kids within the refetch interval cost FusionAuth at most one extra JWKS fetch.
    assert fusionauth["jwks"].call_count <= 2


@pytest.mark.parametrize(
    ("side_effect", "code"),
    [
        (httpx.ConnectTimeout("timed out"), "fusionauth_timeout"),
        (httpx.ReadTimeout("timed out"), "fusionauth_timeout"),
        (httpx.ConnectError("connection refused"), "fusionauth_unavailable"),
        (httpx.Response(500), "fusionauth_error"),
        (httpx.Response(503, text="<html>busy</html>"), "fusionauth_error"),
        (httpx.Response(200, text="{not json"), "fusionauth_error"),
        (httpx.Response(200, json={"unexpected": "shape"}), "fusionauth_error"),
        (
            httpx.Response(400, json={"error": "invalid_grant", "error_reason": "auth_code_not_found"}),
            "token_exchange_failed",
        ),
        (httpx.Response(401, json={"error": "invalid_client"}), "token_exchange_failed"),
        (httpx.Response(401), "token_exchange_failed"),
    ],
)
def test_token_exchange_failures_redirect_with_a_code(
    client: TestClient, fusionauth: respx.MockRouter, side_effect: object, code: str
) -> None:
    login = start_login(client)
    if isinstance(side_effect, httpx.Response):
        fusionauth["token"].mock(return_value=side_effect)
    else:
        fusionauth["token"].mock(side_effect=side_effect)

    response = client.get("/auth/callback", params={"code": "c", "state": login.state})

    assert _callback_error(response) == code
    _no_session(client)


def test_fusionauth_down_at_login_redirects_home(client: TestClient, fusionauth: respx.MockRouter) -> None:
    fusionauth["discovery"].mock(side_effect=httpx.ConnectError("refused"))
    response = client.get("/auth/login")
    assert response.status_code == 303
    assert response.headers["location"] == "/?error=fusionauth_unavailable"


def test_fusionauth_set_cookie_never_reaches_the_browser(
    client: TestClient, fusionauth: respx.MockRouter, tokens: TokenFactory
) -> None:
    login = start_login(client)
    fusionauth["token"].respond(
        json=tokens.token_response(nonce=login.nonce),
        headers={"Set-Cookie": "access_token=leaked; Path=/; HttpOnly"},
    )
    response = client.get("/auth/callback", params={"code": "c", "state": login.state})
    assert response.status_code == 303
    assert all("leaked" not in header for header in response.headers.get_list("set-cookie"))
    # Nor is it kept by our HTTP client and replayed on the next user's call.
    client.post("/auth/logout", headers=JSON_HEADERS)
    assert "cookie" not in fusionauth["revoke"].calls.last.request.headers
