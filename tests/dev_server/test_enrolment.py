"""Second factors a user adds and removes (docs/fusionauth.md §8): Generate a Secret, Enable and Disable
Multi-Factor, and recovery codes (single use, accepted by /api/two-factor/login and the hosted page)."""

from __future__ import annotations

import base64
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from fusionauth_dev import DevServer, ManualClock, totp

from .conftest import ADMIN_KEY, APPLICATION_ID, BFF_KEY, authorize_params, new_pkce

ALICE = "a11ce000-0000-4000-8000-000000000001"
CAROL = "ca201000-0000-4000-8000-000000000003"
DAVE = "da7e0000-0000-4000-8000-000000000004"
ALICE_SECRET = "KnCWSYwMi0S4pr92R7iRpUyfDow="


def new_secret(client: TestClient, key: str = BFF_KEY) -> dict[str, str]:
    response = client.get("/api/two-factor/secret", headers={"Authorization": key})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def enable(client: TestClient, user_id: str, key: str | None = BFF_KEY, **body: Any) -> Any:
    headers = {"Authorization": key} if key is not None else {}
    return client.post(f"/api/user/two-factor/{user_id}", json=body, headers=headers)


def disable(client: TestClient, user_id: str, key: str = BFF_KEY, **body: Any) -> Any:
    return client.request("DELETE", f"/api/user/two-factor/{user_id}", json=body, headers={"Authorization": key})


def code_now(secret_b64: str, clock: ManualClock) -> str:
    return totp.code_at(secret_b64, clock.now())


def methods(client: TestClient, user_id: str) -> list[dict[str, Any]]:
    user = client.get(f"/api/user/{user_id}", headers={"Authorization": ADMIN_KEY}).json()["user"]
    found: list[dict[str, Any]] = user["twoFactor"]["methods"]
    return found


def start_and_complete(client: TestClient, user_id: str, code: str) -> int:
    started = client.post("/api/two-factor/start", json={"userId": user_id}, headers={"Authorization": BFF_KEY})
    two_factor_id = started.json()["twoFactorId"]
    status: int = client.post("/api/two-factor/login", json={"twoFactorId": two_factor_id, "code": code}).status_code
    return status


# -- Generate a Secret -------------------------------------------------------------------------------------------


def test_a_secret_is_fresh_each_time_in_both_encodings(client: TestClient) -> None:
    first, second = new_secret(client), new_secret(client)
    assert first["secret"] != second["secret"]
    raw = base64.b64decode(first["secret"])
    assert len(raw) == 20  # 160 bits
    assert base64.b32decode(first["secretBase32Encoded"]) == raw


def test_a_secret_needs_the_api_key_or_a_jwt(client: TestClient) -> None:
    for headers in ({}, {"Authorization": "not-a-key"}, {"Authorization": "Bearer not-a-jwt"}):
        response = client.get("/api/two-factor/secret", headers=headers)
        assert response.status_code == 401 and response.content == b""
    login = client.post(
        "/api/login",
        json={"loginId": "dave@example.com", "password": "stepup-demo", "applicationId": APPLICATION_ID},
        headers={"Authorization": BFF_KEY},
    )
    token = login.json()["token"]
    assert client.get("/api/two-factor/secret", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# -- Enable Multi-Factor -----------------------------------------------------------------------------------------


def test_the_first_method_brings_ten_recovery_codes_once(client: TestClient, clock: ManualClock) -> None:
    secret = new_secret(client)["secret"]
    response = enable(client, DAVE, method="authenticator", secret=secret, code=code_now(secret, clock), name="Phone")
    assert response.status_code == 200
    codes = response.json()["recoveryCodes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(len(code) == 11 and code[5] == "-" for code in codes)
    [added] = methods(client, DAVE)
    assert (added["method"], added["name"], added["lastUsed"]) == ("authenticator", "Phone", False)
    assert added["authenticator"] == {"algorithm": "HmacSHA1", "codeLength": 6, "timeStep": 30}
    assert "secret" not in added
    # A second method: an empty answer, no new codes.
    other = new_secret(client)["secretBase32Encoded"]
    again = enable(
        client, DAVE, method="authenticator", secretBase32Encoded=other, code=pyotp.TOTP(other).at(int(clock.now()))
    )
    assert again.status_code == 200 and again.content == b""
    assert len(methods(client, DAVE)) == 2
    assert "recoveryCodes" not in str(client.get(f"/api/user/{DAVE}", headers={"Authorization": ADMIN_KEY}).json())


def test_a_user_with_seeded_methods_gets_no_recovery_codes(client: TestClient, clock: ManualClock) -> None:
    secret = new_secret(client)["secret"]
    response = enable(client, ALICE, method="authenticator", secret=secret, code=code_now(secret, clock))
    assert response.status_code == 200 and response.content == b""


def test_a_code_the_secret_does_not_make_is_421(client: TestClient, clock: ManualClock) -> None:
    secret = new_secret(client)["secret"]
    stale = totp.code_at(secret, clock.now() - 90)
    response = enable(client, DAVE, method="authenticator", secret=secret, code=stale)
    assert response.status_code == 421 and response.content == b""
    assert methods(client, DAVE) == []


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        ({"secret": "x", "code": "123456"}, "method", "[blank]method"),
        ({"method": "fingerprint", "code": "1"}, "method", "[invalid]method"),
        ({"method": "authenticator"}, "code", "[blank]code"),
        ({"method": "authenticator", "code": "123456"}, "secret", "[blank]secret"),
        ({"method": "authenticator", "code": "123456", "secret": "%%%"}, "secret", "[invalid]secret"),
        ({"method": "authenticator", "code": "1", "secretBase32Encoded": "!!"}, "secretBase32Encoded", "[invalid]"),
    ],
)
def test_enable_validation_is_400_errors(client: TestClient, body: dict[str, Any], field: str, code: str) -> None:
    response = enable(client, DAVE, **body)
    assert response.status_code == 400
    assert response.json()["fieldErrors"][field][0]["code"].startswith(code)


def test_enable_needs_the_key_and_a_known_user(client: TestClient, clock: ManualClock) -> None:
    secret = new_secret(client)["secret"]
    body = {"method": "authenticator", "secret": secret, "code": code_now(secret, clock)}
    assert enable(client, DAVE, None, **body).status_code == 401
    assert enable(client, DAVE, "not-a-key", **body).status_code == 401
    assert enable(client, "00000000-0000-4000-8000-000000000000", **body).status_code == 404


def test_email_enrolment_is_not_modelled(client: TestClient) -> None:
    # The overlay enables the tenant's email method; this server enables authenticators only.
    response = enable(client, DAVE, method="email", email="dave@example.com", code="123456")
    assert response.status_code == 400
    assert response.json()["generalErrors"][0]["code"] == "[NotImplemented]"


def test_an_enabled_authenticator_steps_up(client: TestClient, clock: ManualClock) -> None:
    secret = new_secret(client)["secret"]
    assert enable(client, DAVE, method="authenticator", secret=secret, code=code_now(secret, clock)).status_code == 200
    assert start_and_complete(client, DAVE, code_now(secret, clock)) == 200


# -- recovery codes ----------------------------------------------------------------------------------------------


def _dave_with_an_authenticator(client: TestClient, clock: ManualClock) -> tuple[str, list[str]]:
    secret = new_secret(client)["secret"]
    response = enable(client, DAVE, method="authenticator", secret=secret, code=code_now(secret, clock))
    codes: list[str] = response.json()["recoveryCodes"]
    return secret, codes


def test_a_recovery_code_completes_a_challenge_once(client: TestClient, clock: ManualClock) -> None:
    _, codes = _dave_with_an_authenticator(client, clock)
    assert start_and_complete(client, DAVE, codes[0]) == 200
    assert start_and_complete(client, DAVE, codes[0]) == 421  # used up
    assert start_and_complete(client, DAVE, codes[1].lower()) == 200
    assert start_and_complete(client, ALICE, codes[2]) == 421  # only the owner's


def test_a_recovery_code_completes_the_hosted_pages_second_factor(client: TestClient, clock: ManualClock) -> None:
    _, codes = _dave_with_an_authenticator(client, clock)
    patched = client.patch(
        "/api/tenant/d7d09513-a3f5-401c-9685-34ab6c552453",
        json={"tenant": {"multiFactorConfiguration": {"loginPolicy": "Enabled"}}},
        headers={"Authorization": ADMIN_KEY},
    )
    assert patched.status_code == 200
    form = {**authorize_params(new_pkce()), "loginId": "dave@example.com", "password": "stepup-demo"}
    page = client.post("/oauth2/authorize", data=form)
    two_factor_id = page.text.split('name="twoFactorId" value="')[1].split('"')[0]
    done = client.post("/oauth2/two-factor", data={"twoFactorId": two_factor_id, "code": codes[3]})
    assert done.status_code == 302


# -- Disable Multi-Factor ----------------------------------------------------------------------------------------


def test_a_current_code_removes_that_method_only(client: TestClient, clock: ManualClock) -> None:
    carol = methods(client, CAROL)
    authenticator = next(m for m in carol if m["method"] == "authenticator")
    wrong = disable(client, CAROL, methodId=authenticator["id"], code="000000")
    assert wrong.status_code == 421 and wrong.content == b""
    code = totp.code_at("UbNTKDMh4PY61N/nDTd9n88Qz98=", clock.now())
    # The query-string form, as FusionAuth's own client sends it (disable_two_factor).
    response = client.delete(
        f"/api/user/two-factor/{CAROL}",
        params={"methodId": authenticator["id"], "code": code},
        headers={"Authorization": BFF_KEY},
    )
    assert response.status_code == 200 and response.content == b""
    assert [m["method"] for m in methods(client, CAROL)] == ["email"]
    assert start_and_complete(client, CAROL, code) == 421  # its codes no longer work


def test_a_recovery_code_removes_every_method_and_the_codes(client: TestClient, clock: ManualClock) -> None:
    secret, codes = _dave_with_an_authenticator(client, clock)
    other = new_secret(client)["secret"]
    assert enable(client, DAVE, method="authenticator", secret=other, code=code_now(other, clock)).status_code == 200
    first = methods(client, DAVE)[0]["id"]
    assert disable(client, DAVE, methodId=first, code=codes[0]).status_code == 200
    assert methods(client, DAVE) == []
    # The other codes went with the methods, and a new first method brings a new set.
    assert disable(client, DAVE, methodId=first, code=codes[1]).status_code == 400  # no such method any more
    fresh = new_secret(client)["secret"]
    again = enable(client, DAVE, method="authenticator", secret=fresh, code=code_now(fresh, clock))
    assert set(again.json()["recoveryCodes"]).isdisjoint(codes)
    assert start_and_complete(client, DAVE, codes[1]) == 421
    assert start_and_complete(client, DAVE, code_now(secret, clock)) == 421


def test_removing_the_last_method_drops_the_recovery_codes(client: TestClient, clock: ManualClock) -> None:
    secret, codes = _dave_with_an_authenticator(client, clock)
    [method] = methods(client, DAVE)
    assert disable(client, DAVE, methodId=method["id"], code=code_now(secret, clock)).status_code == 200
    fresh = new_secret(client)["secret"]
    assert enable(client, DAVE, method="authenticator", secret=fresh, code=code_now(fresh, clock)).json()[
        "recoveryCodes"
    ]
    assert start_and_complete(client, DAVE, codes[0]) == 421


def test_disable_validation_and_access(client: TestClient, server: DevServer) -> None:
    assert disable(client, ALICE, code="123456").json()["fieldErrors"]["methodId"][0]["code"] == "[blank]methodId"
    assert disable(client, ALICE, methodId="XXXX").json()["fieldErrors"]["code"][0]["code"] == "[blank]code"
    unknown = disable(client, ALICE, methodId="NOPE", code="123456")
    assert unknown.status_code == 400 and unknown.json()["fieldErrors"]["methodId"][0]["code"] == "[invalid]methodId"
    assert disable(client, ALICE, "not-a-key", methodId="X", code="1").status_code == 401
    assert disable(client, "00000000-0000-4000-8000-000000000000", methodId="X", code="1").status_code == 404
    # An emailed method's code would come from the disable variant of the Send API, which is not modelled.
    bob_email = server.seed().user("bob@example.com").methods[0]
    bob = "b0b00000-0000-4000-8000-000000000002"
    assert disable(client, bob, methodId=bob_email.id, code="123456").status_code == 421
