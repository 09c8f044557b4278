"""The OAuth/OIDC endpoints through the ASGI app: hosted login, token, refresh, SSO, logout, userinfo, discovery."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi.testclient import TestClient
from jose import jwt

from fusionauth_dev import DevServer, ManualClock, create_dev_server, totp

from .conftest import (
    APPLICATION_ID,
    CLIENT_SECRET,
    ENV,
    KICKSTART,
    REDIRECT_URI,
    TENANT_ID,
    assert_dev_page,
    authorize_params,
    code_grant,
    exchange,
    new_pkce,
    query_of,
    sign_in,
)


def _verify(client: TestClient, token: str, **options: Any) -> dict[str, Any]:
    jwks = client.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks["keys"] if k["kid"] == kid)
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=APPLICATION_ID,
        issuer="http://localhost:9011",
        options={"verify_exp": False, **options},
    )
    return claims


def test_discovery_uses_tenant_issuer_and_request_base_url(client: TestClient) -> None:
    config = client.get("/.well-known/openid-configuration").json()
    assert config["issuer"] == "http://localhost:9011"
    assert config["authorization_endpoint"] == "http://testserver/oauth2/authorize"
    assert config["token_endpoint"] == "http://testserver/oauth2/token"
    assert config["end_session_endpoint"] == "http://testserver/oauth2/logout"
    assert config["jwks_uri"] == "http://testserver/.well-known/jwks.json"
    assert "client_secret_basic" in config["token_endpoint_auth_methods_supported"]
    assert client.get(f"/{TENANT_ID}/.well-known/openid-configuration").json()["issuer"] == "http://localhost:9011"


def test_discovery_uses_the_configured_public_url(clock: ManualClock) -> None:
    server = create_dev_server([KICKSTART], env=ENV, clock=clock, public_url="http://localhost:9011/")
    with TestClient(server.app) as client:
        config = client.get("/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == "http://localhost:9011/oauth2/token"


def test_authorize_renders_an_escaped_login_form_without_script(client: TestClient) -> None:
    response = client.get("/oauth2/authorize", params=authorize_params(new_pkce(), state='"><script>alert(1)</script>'))
    html = assert_dev_page(response)
    assert "&quot;&gt;&lt;script&gt;" in html
    assert 'name="loginId"' in html and 'name="password"' in html
    assert f'name="client_id" value="{APPLICATION_ID}"' in html
    assert "script-src" not in response.headers["content-security-policy"]
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_wrong_password_rerenders_the_form_with_an_error(client: TestClient) -> None:
    form = {**authorize_params(new_pkce()), "loginId": "dave@example.com", "password": "wrong-password"}
    response = client.post("/oauth2/authorize", data=form)
    assert response.status_code == 200
    assert "location" not in response.headers
    assert "Invalid login credentials." in response.text
    assert 'value="dave@example.com"' in response.text


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(client: TestClient) -> None:
    params = authorize_params(new_pkce(), redirect_uri="https://evil.example/callback")
    response = client.get("/oauth2/authorize", params=params)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "redirect_uri" in response.text
    # Exact match only: a prefix or a variant of an authorized URL is not authorized.
    response = client.get("/oauth2/authorize", params=authorize_params(new_pkce(), redirect_uri=REDIRECT_URI + "/x"))
    assert response.status_code == 400


def test_unknown_client_gets_an_error_page(client: TestClient) -> None:
    response = client.get("/oauth2/authorize", params=authorize_params(new_pkce(), client_id="nope"))
    assert response.status_code == 400
    assert "location" not in response.headers


def test_missing_pkce_is_redirected_back_with_an_error(client: TestClient) -> None:
    params = authorize_params(new_pkce())
    del params["code_challenge"], params["code_challenge_method"]
    response = client.get("/oauth2/authorize", params=params)
    assert response.status_code == 302
    query = query_of(response.headers["location"])
    assert response.headers["location"].startswith(REDIRECT_URI + "?")
    assert query["error"] == "invalid_request"
    assert query["error_reason"] == "missing_code_challenge"
    assert query["state"] == "state-123"
    assert query["error_description"]


def test_unknown_scope_is_rejected(client: TestClient) -> None:
    response = client.get("/oauth2/authorize", params=authorize_params(new_pkce(), scope="openid wibble"))
    query = query_of(response.headers["location"])
    assert (query["error"], query["error_reason"]) == ("invalid_scope", "unknown_scope")


def test_plain_pkce_and_other_response_types_are_rejected(client: TestClient) -> None:
    query = query_of(
        client.get("/oauth2/authorize", params=authorize_params(new_pkce(), code_challenge_method="plain")).headers[
            "location"
        ]
    )
    assert query["error"] == "invalid_request"
    query = query_of(
        client.get("/oauth2/authorize", params=authorize_params(new_pkce(), response_type="token")).headers["location"]
    )
    assert query["error"] == "unsupported_response_type"


def test_sign_in_redirects_with_code_and_exchanges_for_verified_tokens(client: TestClient) -> None:
    pkce = new_pkce()
    query = sign_in(client, pkce, "alice@example.com")
    assert query["state"] == "state-123"
    assert query["userState"] == "Authenticated"
    assert query["locale"] == "en"
    tokens = exchange(client, query["code"], pkce)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid offline_access profile email"
    assert tokens["expires_in"] == 300
    assert tokens["userId"] == "a11ce000-0000-4000-8000-000000000001"
    assert isinstance(tokens["refresh_token"], str) and isinstance(tokens["refresh_token_id"], str)
    access = _verify(client, str(tokens["access_token"]))
    assert access["sub"] == tokens["userId"]
    assert access["applicationId"] == APPLICATION_ID
    assert access["roles"] == ["user"]
    assert access["authenticationType"] == "PASSWORD"
    assert access["tid"] == TENANT_ID
    assert access["sid"] == tokens["refresh_token_id"]
    assert access["scope"] == "openid offline_access profile email"
    assert {"exp", "iat", "jti", "auth_time"} <= access.keys()
    header = jwt.get_unverified_header(str(tokens["access_token"]))
    assert header["typ"] == "JWT" and header["alg"] == "RS256" and header["kid"]
    id_token = _verify(client, str(tokens["id_token"]), verify_at_hash=False)
    assert id_token["nonce"] == "nonce-456"
    assert id_token["email"] == "alice@example.com" and id_token["email_verified"] is True
    assert id_token["name"] == "Alice Example"
    assert id_token["given_name"] == "Alice" and id_token["family_name"] == "Example"
    assert id_token["preferred_username"] == "alice@example.com"
    assert "roles" not in id_token
    digest = hashlib.sha256(str(tokens["access_token"]).encode()).digest()
    assert id_token["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


def test_without_offline_access_there_is_no_refresh_token(client: TestClient) -> None:
    pkce = new_pkce()
    tokens = exchange(client, sign_in(client, pkce, scope="openid")["code"], pkce)
    assert "refresh_token" not in tokens and "refresh_token_id" not in tokens
    assert "email" not in _verify(client, str(tokens["id_token"]), verify_at_hash=False)


def _token(client: TestClient, data: dict[str, str], **kwargs: Any) -> Any:
    return client.post("/oauth2/token", data=data, **kwargs)


def test_pkce_mismatch_is_invalid_grant(client: TestClient) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    data = code_grant(code, pkce, code_verifier="x" * 50)
    response = _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_reason": "invalid_pkce_code_verifier",
        "error_description": response.json()["error_description"],
    }
    del data["code_verifier"]
    code = sign_in(client, pkce)["code"]
    data["code"] = code
    assert _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET)).json()["error_reason"] == "missing_code_verifier"


def test_a_code_is_single_use(client: TestClient) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    exchange(client, code, pkce)
    data = code_grant(code, pkce)
    response = _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_reason"] == "auth_code_not_found"


def test_a_code_expires_after_the_tenant_ttl(client: TestClient, clock: ManualClock) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    clock.advance(31)  # authorizationGrantIdTimeToLiveInSeconds defaults to 30
    data = code_grant(code, pkce)
    assert _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET)).json()["error"] == "invalid_grant"


def test_redirect_uri_must_match_the_authorize_request(client: TestClient) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    data = code_grant(code, pkce, redirect_uri="http://localhost:9000/")
    response = _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert response.json()["error_reason"] == "invalid_redirect_uri"


def test_client_authentication_by_form_fields(client: TestClient) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    data = code_grant(code, pkce, client_id=APPLICATION_ID, client_secret=CLIENT_SECRET)
    assert _token(client, data).status_code == 200


def test_wrong_or_missing_client_secret_is_401(client: TestClient) -> None:
    pkce = new_pkce()
    code = sign_in(client, pkce)["code"]
    data = code_grant(code, pkce)
    wrong = _token(client, data, auth=(APPLICATION_ID, "not-the-secret"))
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    # clientAuthenticationPolicy=Required: PKCE alone is not enough.
    missing = _token(client, {**data, "client_id": APPLICATION_ID})
    assert missing.status_code == 401
    assert missing.json()["error_reason"] == "client_authentication_missing"
    unknown = _token(client, data, auth=("no-such-client", "x"))
    assert unknown.status_code == 401
    # The code was never redeemed by the right client, so it still works.
    assert _token(client, data, auth=(APPLICATION_ID, CLIENT_SECRET)).status_code == 200


def test_unsupported_grant_type(client: TestClient) -> None:
    response = _token(
        client, {"grant_type": "password", "username": "a", "password": "b"}, auth=(APPLICATION_ID, CLIENT_SECRET)
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_missing_token_parameters_are_named(client: TestClient) -> None:
    auth = (APPLICATION_ID, CLIENT_SECRET)
    for data, reason in (
        ({"code": "unused"}, "missing_grant_type"),
        ({"grant_type": "authorization_code"}, "missing_code"),
        ({"grant_type": "refresh_token"}, "missing_refresh_token"),
    ):
        response = _token(client, data, auth=auth)
        assert response.status_code == 400
        assert (response.json()["error"], response.json()["error_reason"]) == ("invalid_request", reason)


def test_a_locked_user_gets_no_tokens(client: TestClient) -> None:
    pkce = new_pkce()
    tokens = exchange(client, sign_in(client, pkce)["code"], pkce)
    code = sign_in(client, pkce)["code"]
    for _ in range(5):  # the kickstart tenant locks a user after five failed attempts
        form = {**authorize_params(pkce), "loginId": "dave@example.com", "password": "wrong-password"}
        client.post("/oauth2/authorize", data=form)
    auth = (APPLICATION_ID, CLIENT_SECRET)
    refresh = {"grant_type": "refresh_token", "refresh_token": str(tokens["refresh_token"])}
    for response in (_token(client, code_grant(code, pkce), auth=auth), _token(client, refresh, auth=auth)):
        assert response.status_code == 400
        assert (response.json()["error"], response.json()["error_reason"]) == ("invalid_grant", "login_prevented")


def test_refresh_grant_and_revocation(client: TestClient) -> None:
    pkce = new_pkce()
    tokens = exchange(client, sign_in(client, pkce, "alice@example.com")["code"], pkce)
    refresh = {"grant_type": "refresh_token", "refresh_token": str(tokens["refresh_token"])}
    response = _token(client, refresh, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 200, response.text
    body = response.json()
    assert {"access_token", "expires_in", "id_token", "token_type", "userId", "scope"} <= body.keys()
    assert "refresh_token" not in body  # Reusable policy: the client keeps its refresh token
    claims = _verify(client, body["access_token"])
    assert claims["authenticationType"] == "REFRESH_TOKEN"
    assert claims["sid"] == tokens["refresh_token_id"]
    assert claims["auth_time"] == _verify(client, str(tokens["access_token"]))["auth_time"]
    narrowed = _token(client, {**refresh, "scope": "openid"}, auth=(APPLICATION_ID, CLIENT_SECRET)).json()
    assert narrowed["scope"] == "openid"
    widened = _token(client, {**refresh, "scope": "openid phone"}, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert widened.json()["error"] == "invalid_scope"
    revoked = client.delete(
        f"/api/jwt/refresh/{tokens['refresh_token_id']}", headers={"Authorization": ENV["FUSIONAUTH_BFF_API_KEY"]}
    )
    assert revoked.status_code == 200
    response = _token(client, refresh, auth=(APPLICATION_ID, CLIENT_SECRET))
    assert response.status_code == 400
    assert (response.json()["error"], response.json()["error_reason"]) == ("invalid_grant", "refresh_token_not_found")


def test_sso_session_signs_in_without_the_form_until_logout(client: TestClient) -> None:
    pkce = new_pkce()
    sign_in(client, pkce, "alice@example.com")
    assert client.cookies.get("fusionauth.sso")
    again = client.get("/oauth2/authorize", params=authorize_params(pkce, state="second"))
    assert again.status_code == 302
    query = query_of(again.headers["location"])
    assert query["state"] == "second" and query["code"]
    assert client.get("/oauth2/authorize", params=authorize_params(pkce, prompt="login")).status_code == 200
    logout = client.get(
        "/oauth2/logout",
        params={"client_id": APPLICATION_ID, "post_logout_redirect_uri": "http://localhost:9000/", "state": "bye"},
    )
    assert logout.status_code == 302
    assert logout.headers["location"] == "http://localhost:9000/?state=bye"
    assert "fusionauth.sso" in logout.headers["set-cookie"]
    form = client.get("/oauth2/authorize", params=authorize_params(pkce))
    assert form.status_code == 200 and 'name="password"' in form.text


def _auth_time(client: TestClient, code: str, pkce: Any) -> int:
    return int(_verify(client, str(exchange(client, code, pkce)["id_token"]), verify_at_hash=False)["auth_time"])


def test_prompt_login_and_max_age_ask_again_and_auth_time_says_when(client: TestClient, clock: ManualClock) -> None:
    """docs/fusionauth.md §6.1: prompt=login and max_age (0 is prompt=login) show the sign-in form even with an SSO
    session; the ID token's auth_time is when the person last typed their password, whatever the request asked."""
    pkce = new_pkce()
    signed_in_at = int(clock.now())
    assert _auth_time(client, sign_in(client, pkce, "alice@example.com")["code"], pkce) == signed_in_at
    clock.advance(120)
    # The SSO session answers without a form: the ID token still says the sign-in of two minutes ago.
    reused = client.get("/oauth2/authorize", params=authorize_params(pkce))
    assert reused.status_code == 302
    assert _auth_time(client, query_of(reused.headers["location"])["code"], pkce) == signed_in_at
    # Younger than max_age: reused too.
    young = client.get("/oauth2/authorize", params=authorize_params(pkce, max_age="600"))
    assert young.status_code == 302
    for asked in ({"prompt": "login"}, {"max_age": "0"}, {"max_age": "60"}):
        form = client.get("/oauth2/authorize", params=authorize_params(pkce, **asked))
        assert form.status_code == 200 and 'name="password"' in form.text, asked
    again = sign_in(client, pkce, "alice@example.com", prompt="login", max_age="0")
    assert _auth_time(client, again["code"], pkce) == signed_in_at + 120
    # The new sign-in is the SSO session's from now on.
    clock.advance(30)
    later = client.get("/oauth2/authorize", params=authorize_params(pkce))
    assert _auth_time(client, query_of(later.headers["location"])["code"], pkce) == signed_in_at + 120


def test_a_malformed_max_age_is_an_error_redirect(client: TestClient) -> None:
    response = client.get("/oauth2/authorize", params=authorize_params(new_pkce(), max_age="soon"))
    assert query_of(response.headers["location"])["error"] == "invalid_request"


def test_prompt_none_without_a_session_is_login_required(client: TestClient) -> None:
    query = query_of(
        client.get("/oauth2/authorize", params=authorize_params(new_pkce(), prompt="none")).headers["location"]
    )
    assert query["error"] == "login_required"


def test_logout_ignores_an_unauthorized_post_logout_redirect_uri(client: TestClient) -> None:
    params = {"client_id": APPLICATION_ID, "post_logout_redirect_uri": "https://evil.example/"}
    assert client.get("/oauth2/logout", params=params).headers["location"] == "http://localhost:9000/"
    assert client.get("/oauth2/logout").headers["location"] == "/"


def test_userinfo(client: TestClient) -> None:
    assert client.get("/oauth2/userinfo").status_code == 401
    assert client.get("/oauth2/userinfo", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    pkce = new_pkce()
    tokens = exchange(client, sign_in(client, pkce, "carol@example.com")["code"], pkce)
    info = client.get("/oauth2/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert info["sub"] == "ca201000-0000-4000-8000-000000000003"
    assert info["email"] == "carol@example.com"


def test_a_user_not_registered_for_the_application_cannot_sign_in(client: TestClient, server: DevServer) -> None:
    removed = server.directory.users["da7e0000-0000-4000-8000-000000000004"].data["registrations"].pop()
    assert removed["applicationId"] == APPLICATION_ID
    form = {**authorize_params(new_pkce()), "loginId": "dave@example.com", "password": "stepup-demo"}
    response = client.post("/oauth2/authorize", data=form)
    assert response.status_code == 200
    assert "not registered" in response.text


def test_jwks_publishes_the_kickstart_key(client: TestClient, server: DevServer) -> None:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    kickstart_key = server.directory.keys["5167e0a4-2b3c-4d5e-8f60-000000000001"]
    assert {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kickstart_key.kid}.items() <= next(
        k for k in keys if k["kid"] == kickstart_key.kid
    ).items()


def test_a_code_challenge_without_its_method_is_plain_and_refused(client: TestClient) -> None:
    params = authorize_params(new_pkce())
    del params["code_challenge_method"]
    query = query_of(client.get("/oauth2/authorize", params=params).headers["location"])
    assert (query["error"], query["error_reason"]) == ("invalid_request", "invalid_code_challenge_method")


def _enable_login_mfa(client: TestClient) -> None:
    patch = {"tenant": {"multiFactorConfiguration": {"loginPolicy": "Enabled"}}}
    response = client.patch(
        f"/api/tenant/{TENANT_ID}", json=patch, headers={"Authorization": ENV["FUSIONAUTH_ADMIN_API_KEY"]}
    )
    assert response.status_code == 200


def _two_factor_id(html: str) -> str:
    found = re.search(r'name="twoFactorId" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def test_hosted_login_asks_for_the_second_factor_when_the_tenant_policy_does(
    client: TestClient, clock: ManualClock
) -> None:
    _enable_login_mfa(client)
    pkce = new_pkce()
    form = {**authorize_params(pkce), "loginId": "alice@example.com", "password": "stepup-demo"}
    page = client.post("/oauth2/authorize", data=form)
    assert page.status_code == 200 and 'name="code"' in page.text and "<script" not in page.text
    two_factor_id = _two_factor_id(page.text)
    # The hosted page's challenge is not usable through the Two-Factor API.
    assert (
        client.post("/api/two-factor/login", json={"twoFactorId": two_factor_id, "code": "123456"}).status_code == 404
    )
    wrong = client.post("/oauth2/two-factor", data={"twoFactorId": two_factor_id, "code": "000000"})
    assert wrong.status_code == 200 and "Invalid verification code." in wrong.text
    code = totp.code_at("KnCWSYwMi0S4pr92R7iRpUyfDow=", clock.now())
    done = client.post("/oauth2/two-factor", data={"twoFactorId": two_factor_id, "code": code})
    assert done.status_code == 302
    assert query_of(done.headers["location"])["state"] == "state-123"
    assert (
        exchange(client, query_of(done.headers["location"])["code"], pkce)["userId"]
        == "a11ce000-0000-4000-8000-000000000001"
    )


def test_hosted_login_sends_a_code_to_a_user_with_only_email(client: TestClient, server: DevServer) -> None:
    _enable_login_mfa(client)
    form = {**authorize_params(new_pkce()), "loginId": "bob@example.com", "password": "stepup-demo"}
    page = client.post("/oauth2/authorize", data=form)
    assert "A code was sent to bob@example.com." in page.text
    code = server.outbox.last_code_for("bob@example.com")
    assert code is not None
    done = client.post("/oauth2/two-factor", data={"twoFactorId": _two_factor_id(page.text), "code": code})
    assert done.status_code == 302
    expired = client.post("/oauth2/two-factor", data={"twoFactorId": _two_factor_id(page.text), "code": code})
    assert expired.status_code == 400
