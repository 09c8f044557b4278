"""Login, JWT and management APIs; API-key rules and endpoint permissions (docs/fusionauth.md §1, §5, §7)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi.testclient import TestClient
from jose import jwt

from fusionauth_dev import ManualClock, totp
from fusionauth_dev.directory import ADMIN_APPLICATION_ID

from .conftest import ADMIN_KEY, APPLICATION_ID, BFF_KEY, PASSWORD, TENANT_ID

ALICE_SECRET = "KnCWSYwMi0S4pr92R7iRpUyfDow="


def login(
    client: TestClient, login_id: str, password: str = PASSWORD, key: str | None = ADMIN_KEY, **extra: Any
) -> Any:
    headers = {"Authorization": key} if key else {}
    body = {"loginId": login_id, "password": password, "applicationId": APPLICATION_ID, **extra}
    return client.post("/api/login", json=body, headers=headers)


def patch_tenant(client: TestClient, tenant: dict[str, Any]) -> None:
    response = client.patch(f"/api/tenant/{TENANT_ID}", json={"tenant": tenant}, headers={"Authorization": ADMIN_KEY})
    assert response.status_code == 200, response.text


def enable_jwt_refresh(client: TestClient) -> None:
    patch = {"application": {"loginConfiguration": {"generateRefreshTokens": True, "allowTokenRefresh": True}}}
    response = client.patch(f"/api/application/{APPLICATION_ID}", json=patch, headers={"Authorization": ADMIN_KEY})
    assert response.status_code == 200


def test_login_succeeds_with_password_only_under_the_kickstart_policy(client: TestClient) -> None:
    response = login(client, "alice@example.com")  # loginPolicy Disabled: no second factor at sign-in
    assert response.status_code == 200
    assert response.json()["user"]["email"] == "alice@example.com"
    assert response.json()["token"]


def test_login_with_bad_credentials_is_404(client: TestClient) -> None:
    assert login(client, "alice@example.com", "wrong-password").status_code == 404
    missing = login(client, "nobody@example.com")
    assert missing.status_code == 404 and missing.content == b""


def test_login_needs_an_api_key_when_an_application_is_named(client: TestClient) -> None:
    assert login(client, "dave@example.com", key=None).status_code == 401
    assert login(client, "dave@example.com", key="wrong").status_code == 401
    # The BFF's key is allowed /api/login (native sign-in); a key without that endpoint is not.
    assert login(client, "dave@example.com", key=BFF_KEY).status_code == 200
    body = {
        "apiKey": {"key": "start-only-key-value", "permissions": {"endpoints": {"/api/two-factor/start": ["POST"]}}}
    }
    assert client.post("/api/api-key", json=body, headers={"Authorization": ADMIN_KEY}).status_code == 200
    assert login(client, "dave@example.com", key="start-only-key-value").status_code == 401
    patch = {"application": {"loginConfiguration": {"requireAuthentication": False}}}
    client.patch(f"/api/application/{APPLICATION_ID}", json=patch, headers={"Authorization": ADMIN_KEY})
    assert login(client, "dave@example.com", key=None).status_code == 200


def test_login_returns_242_when_the_tenant_policy_asks_for_the_second_factor(
    client: TestClient, clock: ManualClock
) -> None:
    patch_tenant(client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}})
    response = login(client, "alice@example.com")
    assert response.status_code == 242
    body = response.json()
    assert set(body) == {"twoFactorId", "methods"}
    assert body["methods"][0]["method"] == "authenticator"
    done = client.post(
        "/api/two-factor/login",
        json={"twoFactorId": body["twoFactorId"], "code": totp.code_at(ALICE_SECRET, clock.now())},
    )
    assert done.status_code == 200
    assert done.json()["user"]["id"] == "a11ce000-0000-4000-8000-000000000001"
    # A user without a second factor signs straight in.
    assert login(client, "dave@example.com").status_code == 200


def complete_with_totp(client: TestClient, clock: ManualClock, two_factor_id: str, **extra: Any) -> Any:
    """Finish a 242 with alice's authenticator code."""
    body = {"twoFactorId": two_factor_id, "code": totp.code_at(ALICE_SECRET, clock.now()), **extra}
    return client.post("/api/two-factor/login", json=body)


def test_trusted_computer_skips_the_second_factor(client: TestClient, clock: ManualClock) -> None:
    patch_tenant(client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}})
    challenge = login(client, "alice@example.com").json()
    trusted = complete_with_totp(client, clock, challenge["twoFactorId"], trustComputer=True).json()["twoFactorTrustId"]
    client.cookies.clear()
    assert login(client, "alice@example.com", twoFactorTrustId=trusted).status_code == 200


def test_wrong_passwords_lock_the_user_for_the_action_duration(client: TestClient, clock: ManualClock) -> None:
    for _ in range(5):
        assert login(client, "dave@example.com", "wrong-password").status_code == 404
    locked = login(client, "dave@example.com")
    assert locked.status_code == 409
    assert locked.json()["actions"][0]["actionId"] == "10c0a471-6c2d-4e3f-8a9b-000000000001"
    clock.advance(181)
    assert login(client, "dave@example.com").status_code == 200


ALICE = "a11ce000-0000-4000-8000-000000000001"
DAVE = "da7e0000-0000-4000-8000-000000000004"
ADMIN = {"Authorization": ADMIN_KEY}


def patch_application(client: TestClient, application: dict[str, Any]) -> None:
    response = client.patch(f"/api/application/{APPLICATION_ID}", json={"application": application}, headers=ADMIN)
    assert response.status_code == 200, response.text


def patch_user(client: TestClient, user_id: str, user: dict[str, Any]) -> None:
    response = client.patch(f"/api/user/{user_id}", json={"user": user}, headers=ADMIN)
    assert response.status_code == 200, response.text


def test_the_applications_login_policy_supersedes_the_tenants(client: TestClient) -> None:
    # The kickstart tenant says Disabled; the application asks for the second factor.
    patch_application(client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}})
    assert login(client, "alice@example.com").status_code == 242
    # And the other way round: the tenant asks, the application does not.
    patch_tenant(client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}})
    patch_application(client, {"multiFactorConfiguration": {"loginPolicy": "Disabled"}})
    assert login(client, "alice@example.com").status_code == 200


def test_required_policy_asks_a_user_without_a_method_to_set_one_up(client: TestClient) -> None:
    patch_tenant(client, {"multiFactorConfiguration": {"loginPolicy": "Required"}})
    response = login(client, "dave@example.com")
    assert response.status_code == 242
    body = response.json()
    assert set(body) == {"twoFactorId", "configurableMethods"}
    assert body["configurableMethods"] == ["authenticator", "email"]  # what the tenant (with the overlay) enables
    assert login(client, "alice@example.com").json()["methods"][0]["method"] == "authenticator"
    # Enabled asks only users who have a method.
    patch_tenant(client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}})
    assert login(client, "dave@example.com").status_code == 200


def test_a_deactivated_user_is_423_even_with_a_wrong_password(client: TestClient) -> None:
    assert client.delete(f"/api/user/{DAVE}", headers=ADMIN).status_code == 200
    locked = login(client, "dave@example.com")
    assert (locked.status_code, locked.content) == (423, b"")
    # FusionAuth/fusionauth-issues#2524: the lock is reported before the password is checked.
    assert login(client, "dave@example.com", "wrong-password").status_code == 423
    assert client.get(f"/api/user/{DAVE}", headers=ADMIN).json()["user"]["active"] is False
    assert client.put(f"/api/user/{DAVE}", params={"reactivate": "true"}, headers=ADMIN).status_code == 200
    assert login(client, "dave@example.com").status_code == 200
    # hardDelete removes the user: then it is an unknown user, 404.
    assert client.delete(f"/api/user/{DAVE}", params={"hardDelete": "true"}, headers=ADMIN).status_code == 200
    assert login(client, "dave@example.com").status_code == 404


def test_an_expired_user_is_410(client: TestClient, clock: ManualClock) -> None:
    patch_user(client, DAVE, {"expiry": int((clock.now() + 60) * 1000)})
    assert login(client, "dave@example.com").status_code == 200
    clock.advance(60)
    expired = login(client, "dave@example.com")
    assert (expired.status_code, expired.content) == (410, b"")
    assert login(client, "dave@example.com", "wrong-password").status_code == 404  # the password is checked first


def test_a_required_password_change_is_203_without_tokens(client: TestClient) -> None:
    patch_user(client, DAVE, {"passwordChangeRequired": True, "passwordChangeReason": "Expired"})
    response = login(client, "dave@example.com")
    assert response.status_code == 203
    body = response.json()
    assert set(body) == {"changePasswordId", "changePasswordReason"}
    assert body["changePasswordReason"] == "Expired"
    assert "access_token" not in response.cookies


def test_unverified_email_is_212_and_unverified_registration_213(client: TestClient) -> None:
    patch_tenant(client, {"emailConfiguration": {"verifyEmail": True}})
    patch_user(client, DAVE, {"verified": False})
    unverified = login(client, "dave@example.com")
    assert unverified.status_code == 212
    assert unverified.json()["token"] and unverified.json()["user"]["verified"] is False
    assert login(client, "alice@example.com").status_code == 200  # verified

    patch_application(client, {"verifyRegistration": True})
    created = client.post(
        "/api/user/registration",
        json={
            "user": {"email": "erin@example.com", "password": PASSWORD},
            "registration": {"applicationId": APPLICATION_ID},
        },
        headers=ADMIN,
    )
    assert created.status_code == 200 and created.json()["registration"]["verified"] is False
    assert login(client, "erin@example.com").status_code == 213
    assert login(client, "alice@example.com").status_code == 200  # registered before, with verification skipped


def test_not_registered_for_the_application_is_202(client: TestClient) -> None:
    created = client.post(
        "/api/user", json={"user": {"email": "frank@example.com", "password": PASSWORD}}, headers=ADMIN
    )
    assert created.status_code == 200
    response = login(client, "frank@example.com")
    assert response.status_code == 202
    assert response.json()["user"]["email"] == "frank@example.com"


def test_conditions_apply_after_the_second_factor_too(client: TestClient, clock: ManualClock) -> None:
    patch_tenant(
        client, {"multiFactorConfiguration": {"loginPolicy": "Enabled"}, "emailConfiguration": {"verifyEmail": True}}
    )
    patch_user(client, ALICE, {"verified": False})
    challenge = login(client, "alice@example.com").json()
    done = complete_with_totp(client, clock, challenge["twoFactorId"], applicationId=APPLICATION_ID)
    assert done.status_code == 212
    assert done.json()["token"]


def test_jwt_refresh_api(client: TestClient) -> None:
    enable_jwt_refresh(client)
    logged_in = login(client, "dave@example.com").json()
    client.cookies.clear()  # the body's refreshToken, not the cookie
    response = client.post("/api/jwt/refresh", json={"refreshToken": logged_in["refreshToken"]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "refreshToken", "refreshTokenId"}
    assert body["refreshToken"] == logged_in["refreshToken"]  # Reusable policy
    assert body["refreshTokenId"] == logged_in["refreshTokenId"]
    client.cookies.clear()
    unknown = client.post("/api/jwt/refresh", json={"refreshToken": "nope"})
    assert unknown.status_code == 400
    assert unknown.json()["fieldErrors"]["refreshToken"][0]["code"] == "[invalid]refreshToken"


def test_jwt_refresh_needs_allow_token_refresh_for_login_api_tokens(client: TestClient) -> None:
    patch = {"application": {"loginConfiguration": {"generateRefreshTokens": True}}}
    client.patch(f"/api/application/{APPLICATION_ID}", json=patch, headers={"Authorization": ADMIN_KEY})
    logged_in = login(client, "dave@example.com").json()
    client.cookies.clear()
    assert client.post("/api/jwt/refresh", json={"refreshToken": logged_in["refreshToken"]}).status_code == 400


def test_revoke_refresh_token_by_id_with_api_key_or_owner_jwt(client: TestClient) -> None:
    enable_jwt_refresh(client)
    dave = login(client, "dave@example.com").json()
    alice = login(client, "alice@example.com").json()
    client.cookies.clear()
    other = client.delete(
        f"/api/jwt/refresh/{dave['refreshTokenId']}", headers={"Authorization": f"Bearer {alice['token']}"}
    )
    assert other.status_code == 401
    own = client.delete(
        f"/api/jwt/refresh/{dave['refreshTokenId']}", headers={"Authorization": f"Bearer {dave['token']}"}
    )
    assert own.status_code == 200 and own.content == b""
    again = client.delete(f"/api/jwt/refresh/{dave['refreshTokenId']}", headers={"Authorization": BFF_KEY})
    assert again.status_code == 404
    assert client.delete(f"/api/jwt/refresh/{alice['refreshTokenId']}").status_code == 401
    assert (
        client.delete(f"/api/jwt/refresh/{alice['refreshTokenId']}", headers={"Authorization": BFF_KEY}).status_code
        == 200
    )
    assert client.post("/api/jwt/refresh", json={"refreshToken": alice["refreshToken"]}).status_code == 400


def test_revoke_all_refresh_tokens_of_a_user(client: TestClient) -> None:
    enable_jwt_refresh(client)
    dave = login(client, "dave@example.com").json()
    client.cookies.clear()
    user_id = dave["user"]["id"]
    assert (
        client.delete("/api/jwt/refresh", params={"userId": user_id}, headers={"Authorization": BFF_KEY}).status_code
        == 200
    )
    assert client.post("/api/jwt/refresh", json={"refreshToken": dave["refreshToken"]}).status_code == 400


def test_validate_jwt(client: TestClient, clock: ManualClock) -> None:
    token = login(client, "dave@example.com").json()["token"]
    client.cookies.clear()
    response = client.get("/api/jwt/validate", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["jwt"]["sub"] == "da7e0000-0000-4000-8000-000000000004"
    assert client.get("/api/jwt/validate", headers={"Authorization": "Bearer x.y.z"}).status_code == 401
    clock.advance(301)  # the kickstart application's timeToLiveInSeconds is 300
    assert client.get("/api/jwt/validate", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_public_key_of_the_application_verifies_its_tokens_anonymously(client: TestClient) -> None:
    token = login(client, "dave@example.com").json()["token"]
    client.cookies.clear()
    response = client.get("/api/jwt/public-key", params={"applicationId": APPLICATION_ID})  # no API key
    assert response.status_code == 200
    assert set(response.json()) == {"publicKey"}
    pem = response.json()["publicKey"]
    assert isinstance(load_pem_public_key(pem.encode()), rsa.RSAPublicKey)
    claims = jwt.decode(token, pem, algorithms=["RS256"], audience=APPLICATION_ID, options={"verify_exp": False})
    assert claims["sub"] == "da7e0000-0000-4000-8000-000000000004"
    kid = jwt.get_unverified_header(token)["kid"]
    # The docs and the official clients send `kid`; the OpenAPI spec calls the same parameter `keyId`.
    assert client.get("/api/jwt/public-key", params={"kid": kid}).json() == {"publicKey": pem}
    assert client.get("/api/jwt/public-key", params={"keyId": kid}).json() == {"publicKey": pem}


def test_public_keys_are_listed_by_kid_like_the_jwks(client: TestClient) -> None:
    response = client.get("/api/jwt/public-key")
    assert response.status_code == 200
    listed = response.json()["publicKeys"]
    jwks = client.get("/.well-known/jwks.json").json()["keys"]
    assert set(listed) == {key["kid"] for key in jwks}
    for kid, pem in listed.items():
        assert client.get("/api/jwt/public-key", params={"kid": kid}).json() == {"publicKey": pem}
        public = load_pem_public_key(pem.encode())
        assert isinstance(public, rsa.RSAPublicKey)
        [jwk] = [key for key in jwks if key["kid"] == kid]
        assert public.public_numbers().n == int.from_bytes(base64.urlsafe_b64decode(jwk["n"] + "=="), "big")


def test_public_key_is_404_for_an_unknown_key_or_an_application_without_its_own(client: TestClient) -> None:
    unknown = client.get("/api/jwt/public-key", params={"applicationId": "00000000-0000-4000-8000-000000000000"})
    assert (unknown.status_code, unknown.content) == (404, b"")
    assert client.get("/api/jwt/public-key", params={"kid": "no-such-kid"}).status_code == 404
    # FusionAuth's own application signs with its tenant's keys (jwtConfiguration.enabled is false).
    assert client.get("/api/jwt/public-key", params={"applicationId": ADMIN_APPLICATION_ID}).status_code == 404


def test_public_key_follows_the_application_to_a_new_key(client: TestClient) -> None:
    admin = {"Authorization": ADMIN_KEY}
    generated = client.post("/api/key/generate", json={"key": {"algorithm": "RS256", "name": "rotated"}}, headers=admin)
    assert generated.status_code == 200, generated.text
    key = generated.json()["key"]
    patch = {"application": {"jwtConfiguration": {"accessTokenKeyId": key["id"]}}}
    assert client.patch(f"/api/application/{APPLICATION_ID}", json=patch, headers=admin).status_code == 200
    response = client.get("/api/jwt/public-key", params={"applicationId": APPLICATION_ID})
    assert response.json() == {"publicKey": key["publicKey"]}
    assert client.get("/api/jwt/public-key").json()["publicKeys"][key["kid"]] == key["publicKey"]
    disabled = {"application": {"jwtConfiguration": {"enabled": False}}}
    assert client.patch(f"/api/application/{APPLICATION_ID}", json=disabled, headers=admin).status_code == 200
    assert client.get("/api/jwt/public-key", params={"applicationId": APPLICATION_ID}).status_code == 404


def test_status(client: TestClient) -> None:
    response = client.get("/api/status")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_retrieve_application_returns_the_stored_json(client: TestClient) -> None:
    response = client.get(f"/api/application/{APPLICATION_ID}", headers={"Authorization": BFF_KEY})
    assert response.status_code == 200
    application = response.json()["application"]
    assert application["id"] == APPLICATION_ID and application["name"] == "Step-up BFF"
    oauth = application["oauthConfiguration"]
    assert oauth["clientId"] == APPLICATION_ID
    assert oauth["authorizedRedirectURLs"] == ["http://localhost:9000/auth/callback", "http://localhost:9000/"]
    assert oauth["proofKeyForCodeExchangePolicy"] == "Required"
    assert application["tenantId"] == TENANT_ID
    assert client.get(f"/api/application/{APPLICATION_ID}").status_code == 401
    missing = client.get("/api/application/00000000-0000-4000-8000-000000000000", headers={"Authorization": BFF_KEY})
    assert missing.status_code == 404


def test_endpoint_permissions_are_enforced_per_endpoint_and_method(client: TestClient) -> None:
    bff = {"Authorization": BFF_KEY}
    # GET /api/user is among the BFF key's endpoints (a user's second factors); changing a user is not.
    assert client.get("/api/user/da7e0000-0000-4000-8000-000000000004", headers=bff).status_code == 200
    assert client.patch("/api/user/da7e0000-0000-4000-8000-000000000004", json={}, headers=bff).status_code == 401
    assert client.delete("/api/user/da7e0000-0000-4000-8000-000000000004", headers=bff).status_code == 401
    assert client.patch(f"/api/application/{APPLICATION_ID}", json={"application": {}}, headers=bff).status_code == 401
    assert client.patch(f"/api/tenant/{TENANT_ID}", json={"tenant": {}}, headers=bff).status_code == 401
    assert client.get(f"/api/tenant/{TENANT_ID}", headers=bff).status_code == 200  # doctor reads it
    assert (
        client.get("/api/user/da7e0000-0000-4000-8000-000000000004", headers={"Authorization": ADMIN_KEY}).status_code
        == 200
    )


def test_only_a_key_manager_key_manages_api_keys(client: TestClient) -> None:
    body = {"apiKey": {"key": "another-key-value", "permissions": {"endpoints": {"/api/two-factor/start": ["POST"]}}}}
    assert client.post("/api/api-key", json=body, headers={"Authorization": BFF_KEY}).status_code == 401
    created = client.post("/api/api-key", json=body, headers={"Authorization": ADMIN_KEY})
    assert created.status_code == 200
    assert created.json()["apiKey"]["permissions"] == {"endpoints": {"/api/two-factor/start": ["POST"]}}
    assert (
        client.post(
            "/api/two-factor/start",
            json={"loginId": "dave@example.com"},
            headers={"Authorization": "another-key-value"},
        ).status_code
        == 200
    )
    assert (
        client.get(f"/api/application/{APPLICATION_ID}", headers={"Authorization": "another-key-value"}).status_code
        == 401
    )


def test_live_api_creates_users_like_kickstart_does(client: TestClient) -> None:
    admin = {"Authorization": ADMIN_KEY}
    body = {
        "user": {
            "email": "erin@example.com",
            "password": "long-enough",
            "twoFactor": {"methods": [{"method": "authenticator", "secret": ALICE_SECRET}]},
        },
        "registration": {"applicationId": APPLICATION_ID},
    }
    response = client.post("/api/user/registration", json=body, headers=admin)
    assert response.status_code == 200, response.text
    user = response.json()["user"]
    assert user["registrations"][0]["roles"] == ["user"]  # the application's default role
    assert "secret" not in user["twoFactor"]["methods"][0]
    duplicate = client.post("/api/user/registration", json=body, headers=admin)
    assert duplicate.status_code == 400
    assert duplicate.json()["fieldErrors"]["user.email"][0]["code"] == "[duplicate]user.email"
    short = client.post("/api/user", json={"user": {"email": "x@example.com", "password": "short"}}, headers=admin)
    assert short.json()["fieldErrors"]["user.password"][0]["code"] == "[tooShort]user.password"
    assert login(client, "erin@example.com", "long-enough").status_code == 200


def test_patch_appends_methods_and_merge_patch_replaces(client: TestClient) -> None:
    admin = {"Authorization": ADMIN_KEY}
    user_url = "/api/user/da7e0000-0000-4000-8000-000000000004"
    patch = {"user": {"twoFactor": {"methods": [{"method": "email", "email": "dave@example.com"}]}}}
    assert client.patch(user_url, json=patch, headers=admin).status_code == 200
    assert client.patch(user_url, json=patch, headers=admin).status_code == 200
    assert len(client.get(user_url, headers=admin).json()["user"]["twoFactor"]["methods"]) == 2
    headers = {**admin, "Content-Type": "application/merge-patch+json"}
    assert (
        client.patch(user_url, content=b'{"user": {"twoFactor": {"methods": []}}}', headers=headers).status_code == 200
    )
    assert client.get(user_url, headers=admin).json()["user"]["twoFactor"]["methods"] == []


def test_invalid_json_is_a_400_with_errors(client: TestClient) -> None:
    response = client.post(
        "/api/two-factor/start",
        content=b"{not json",
        headers={"Authorization": BFF_KEY, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["generalErrors"][0]["code"] == "[invalidJSON]"
