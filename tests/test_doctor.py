"""`stepup-bff doctor` against a respx-mocked FusionAuth broken one way per test, and against the dev server seeded
from the real kickstart files."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import API_KEY, CLIENT_SECRET, PUBLIC_URL, SECRET_KEY, make_settings
from fusionauth_dev import create_dev_server
from stepup_bff.cli import main
from stepup_bff.ops.doctor import run_doctor
from stepup_bff.settings import Settings
from support.fake_fusionauth import APPLICATION_ID, FA_URL, ISSUER, WEBHOOK_KID, discovery, jwks, signing_key
from support.live_server import serve

ROOT = Path(__file__).resolve().parents[1]
TENANT_ID = "d7d09513-a3f5-401c-9685-34ab6c552453"
KEY_ID = "5167e0a4-2b3c-4d5e-8f60-000000000001"
WEBHOOK_KEY_UUID = "5167e0a4-2b3c-4d5e-8f60-000000000002"
WEBHOOK_URL = f"{PUBLIC_URL}/webhooks/fusionauth"
EVENTS = ("jwt.refresh-token.revoke", "user.deactivate", "user.delete")
SECRETS = (API_KEY, CLIENT_SECRET, SECRET_KEY)


def _public_pem(kid: str = "key-1") -> str:
    private = serialization.load_pem_private_key(signing_key(kid).private_pem, password=None)
    return (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _application() -> dict[str, Any]:
    return {
        "id": APPLICATION_ID,
        "tenantId": TENANT_ID,
        "name": "Step-up BFF",
        "active": True,
        "oauthConfiguration": {
            "authorizedRedirectURLs": [f"{PUBLIC_URL}/auth/callback", f"{PUBLIC_URL}/"],
            "logoutURL": f"{PUBLIC_URL}/",
            "clientAuthenticationPolicy": "Required",
            "proofKeyForCodeExchangePolicy": "Required",
            "enabledGrants": ["authorization_code", "refresh_token"],
            "generateRefreshTokens": True,
        },
        "jwtConfiguration": {"enabled": True, "accessTokenKeyId": KEY_ID, "idTokenKeyId": KEY_ID},
    }


class FakeFusionAuth:
    """A correctly configured FusionAuth behind respx, as docs/fusionauth.md describes it; each test breaks one
    thing."""

    def __init__(self, router: respx.MockRouter) -> None:
        self.router = router
        self.application = _application()
        self.jwks: dict[str, Any] = jwks("key-1", WEBHOOK_KID)
        self.webhooks: list[dict[str, Any]] = [
            {
                "id": "3e6b0000-7c1d-4b2a-9e5f-000000000001",
                "url": WEBHOOK_URL,
                "global": True,
                "eventsEnabled": dict.fromkeys(EVENTS, True),
                "signatureConfiguration": {"enabled": True, "signingKeyId": WEBHOOK_KEY_UUID},
            }
        ]
        self.webhook_key: dict[str, Any] = {"id": WEBHOOK_KEY_UUID, "kid": WEBHOOK_KID, "algorithm": "RS256"}
        self.tenant_events: dict[str, Any] = {event: {"enabled": True, "transactionType": "None"} for event in EVENTS}
        self.public_key: str | None = _public_pem()  # None: the application signs with an HMAC key
        self.public_key_api = True
        self.tenant_issuer = ISSUER
        self.api_key = API_KEY
        self.allowed = {
            "POST /api/two-factor/start",
            "DELETE /api/jwt/refresh",
            "GET /api/application",
            "POST /api/login",
            "GET /api/user-action",
            "GET /api/webhook",
            "GET /api/key",
            "GET /api/tenant",
            "GET /api/user",
            "GET /api/two-factor/secret",
            "POST /api/user/two-factor",
            "DELETE /api/user/two-factor",
        }
        self.client_secret = CLIENT_SECRET
        self.probes: list[httpx.Request] = []
        router.get("/api/status", name="status").respond(json={"status": "ok"})
        router.get("/.well-known/openid-configuration", name="discovery").respond(json=discovery())
        router.get("/.well-known/jwks.json", name="jwks").mock(
            side_effect=lambda _: httpx.Response(200, json=self.jwks)
        )
        router.post("/api/two-factor/start", name="start").mock(side_effect=self._start)
        router.delete(path__regex=r"^/api/jwt/refresh/[^/]+$", name="revoke").mock(side_effect=self._revoke)
        router.get(f"/api/application/{APPLICATION_ID}", name="application").mock(side_effect=self._read_application)
        router.get(f"/{TENANT_ID}/.well-known/openid-configuration", name="tenant_discovery").mock(
            side_effect=lambda _: httpx.Response(200, json=discovery(self.tenant_issuer))
        )
        router.get(path="/api/jwt/public-key", name="public_key").mock(side_effect=self._public_key)
        router.post("/oauth2/token", name="token").mock(side_effect=self._token)
        router.post("/api/login", name="login").mock(side_effect=self._login)
        router.get(path__regex=r"^/api/user-action/[^/]+$", name="user_action").mock(
            side_effect=lambda request: self._read(request, "GET /api/user-action", httpx.Response(404))
        )
        router.get("/api/webhook", name="webhooks").mock(
            side_effect=lambda request: self._read(request, "GET /api/webhook", {"webhooks": self.webhooks})
        )
        router.get(f"/api/key/{WEBHOOK_KEY_UUID}", name="webhook_key").mock(
            side_effect=lambda request: self._read(request, "GET /api/key", {"key": self.webhook_key})
        )
        router.get(f"/api/tenant/{TENANT_ID}", name="tenant").mock(
            side_effect=lambda request: self._read(
                request, "GET /api/tenant", {"tenant": {"eventConfiguration": {"events": self.tenant_events}}}
            )
        )
        router.get(path__regex=r"^/api/user/[^/]+$", name="user").mock(side_effect=self._nobody("GET /api/user"))
        router.get("/api/two-factor/secret", name="secret").mock(side_effect=self._secret)
        for method in ("POST", "DELETE"):
            router.route(method=method, path__regex=r"^/api/user/two-factor/[^/]+$", name=f"{method} factor").mock(
                side_effect=self._nobody(f"{method} /api/user/two-factor")
            )

    def _read(self, request: httpx.Request, endpoint: str, answer: Any) -> httpx.Response:
        if not self._key_allows(request, endpoint):
            return httpx.Response(401)
        return answer if isinstance(answer, httpx.Response) else httpx.Response(200, json=answer)

    def _key_allows(self, request: httpx.Request, endpoint: str) -> bool:
        # A wrong key and a key without the endpoint look the same: 401, empty body (docs/fusionauth.md §1).
        return request.headers.get("authorization") == self.api_key and endpoint in self.allowed

    def _start(self, request: httpx.Request) -> httpx.Response:
        self.probes.append(request)
        if not self._key_allows(request, "POST /api/two-factor/start"):
            return httpx.Response(401)
        return httpx.Response(404)  # no such user

    def _revoke(self, request: httpx.Request) -> httpx.Response:
        self.probes.append(request)
        if not self._key_allows(request, "DELETE /api/jwt/refresh"):
            return httpx.Response(401)
        return httpx.Response(404)  # no such refresh token

    def _login(self, request: httpx.Request) -> httpx.Response:
        self.probes.append(request)
        if not self._key_allows(request, "POST /api/login"):
            return httpx.Response(401)
        return httpx.Response(404)  # no such user (or a wrong password: the same answer)

    def _nobody(self, endpoint: str) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            self.probes.append(request)
            if not self._key_allows(request, endpoint):
                return httpx.Response(401)
            return httpx.Response(404)  # no such user

        return answer

    def _secret(self, request: httpx.Request) -> httpx.Response:
        self.probes.append(request)
        if not self._key_allows(request, "GET /api/two-factor/secret"):
            return httpx.Response(401)
        return httpx.Response(200, json={"secret": "c2VjcmV0", "secretBase32Encoded": "ONSWG4TFOQ"})

    def _read_application(self, request: httpx.Request) -> httpx.Response:
        if not self._key_allows(request, "GET /api/application"):
            return httpx.Response(401)
        return httpx.Response(200, json={"application": self.application})

    def _public_key(self, request: httpx.Request) -> httpx.Response:
        if not self.public_key_api:
            return httpx.Response(404)
        if "applicationId" not in request.url.params:
            return httpx.Response(200, json={"publicKeys": {"key-1": _public_pem()}})
        if self.public_key is None:
            return httpx.Response(404)
        return httpx.Response(200, json={"publicKey": self.public_key})

    def _token(self, request: httpx.Request) -> httpx.Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        if scheme != "Basic" or (unquote_plus(client_id), unquote_plus(secret)) != (APPLICATION_ID, self.client_secret):
            body = {"error": "invalid_client", "error_reason": "invalid_client_authentication"}
            return httpx.Response(401, json=body)
        return httpx.Response(400, json={"error": "invalid_grant", "error_reason": "auth_code_not_found"})


@pytest.fixture
def fake() -> Iterator[FakeFusionAuth]:
    with respx.mock(base_url=FA_URL, assert_all_called=False) as router:  # an unexpected call fails the test
        yield FakeFusionAuth(router)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, fusionauth={"webhook_key_id": WEBHOOK_KID})


def doctor(settings: Settings, **options: Any) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    code = asyncio.run(run_doctor(settings, out=out, err=err, **options))
    text = out.getvalue()
    for secret in SECRETS:
        assert secret not in text + err.getvalue(), "doctor printed a secret"
    return code, text.splitlines(), err.getvalue()


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("✗")]


def only_failure(lines: list[str]) -> str:
    found = failures(lines)
    assert len(found) == 1, "\n".join(lines)
    return found[0]


# -- a healthy FusionAuth -----------------------------------------------------------------------------------------


def test_a_correct_configuration_passes_every_check(fake: FakeFusionAuth, settings: Settings) -> None:
    code, lines, _ = doctor(settings)
    checks, summary = lines[:-1], lines[-1]
    assert code == 0, "\n".join(lines)
    assert all(line.startswith("✓ ") for line in checks), "\n".join(lines)
    assert summary == f"All {len(checks)} checks passed."
    assert any("POST /api/two-factor/start" in line for line in checks)
    assert any(f"{PUBLIC_URL}/auth/callback is authorized" in line for line in checks)
    assert any("RS256" in line and "key-1" in line for line in checks)


def test_the_api_key_probes_cannot_touch_a_real_user_or_token(fake: FakeFusionAuth, settings: Settings) -> None:
    doctor(settings)
    start, revoke, *factors = fake.probes
    body = json.loads(start.content)
    # A random id, never a loginId (an email could be a real person's): FusionAuth answers 404 and starts nothing.
    assert set(body) == {"userId", "applicationId"}
    assert uuid.UUID(body["userId"]).version == 4
    # One token by a random id, never the ?userId= / ?applicationId= forms that revoke everything.
    assert not revoke.url.query
    assert uuid.UUID(revoke.url.path.rsplit("/", 1)[1]).version == 4
    # The second factors' APIs: a random user, never a real one's; the new secret is thrown away.
    user, secret, enable, disable = factors
    assert (user.method, secret.method, enable.method, disable.method) == ("GET", "GET", "POST", "DELETE")
    assert secret.url.path == "/api/two-factor/secret"
    for probe in (user, enable, disable):
        assert uuid.UUID(probe.url.path.rsplit("/", 1)[1]).version == 4 and not probe.url.query
    assert json.loads(disable.content) == {"methodId": "NONE", "code": "000000"}


def test_the_factor_probes_take_any_answer_but_401_as_the_key_accepted(
    fake: FakeFusionAuth, settings: Settings
) -> None:
    for name, status in (("POST factor", 421), ("DELETE factor", 400)):
        fake.router[name].side_effect = None
        fake.router[name].respond(status)
    code, lines, _ = doctor(settings)
    assert code == 0, "\n".join(lines)
    fake.allowed.discard("DELETE /api/user/two-factor")
    fake.router["DELETE factor"].side_effect = fake._nobody("DELETE /api/user/two-factor")
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "refused the API key for DELETE /api/user/two-factor (401)" in only_failure(lines)


def test_a_second_run_probes_with_new_ids(fake: FakeFusionAuth, settings: Settings) -> None:
    doctor(settings)
    doctor(settings)
    starts = [request for request in fake.probes if request.url.path == "/api/two-factor/start"]
    assert len({json.loads(request.content)["userId"] for request in starts}) == 2
    users = {request.url.path for request in fake.probes if request.url.path.startswith("/api/user/")}
    assert len(users) == 4  # each run one made-up user, for the User API and the Enable and Disable APIs


# -- misconfigurations ----------------------------------------------------------------------------------------------


def test_fusionauth_unreachable(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["status"].side_effect = httpx.ConnectError("connection refused")
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert f"cannot connect to FusionAuth at {FA_URL}" in line
    assert "STEPUP_FUSIONAUTH__URL" in line.split(" — ", 1)[1]
    assert any(line.startswith("– the other FusionAuth checks did not run") for line in lines)
    assert not fake.router["discovery"].called


def test_fusionauth_too_slow(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["status"].side_effect = httpx.ReadTimeout("slow")
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "did not answer in time (timeout 5 s, connect 2 s)" in only_failure(lines)


def test_fusionauth_failing(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["status"].respond(503)
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "HTTP 503" in only_failure(lines)


def test_wrong_api_key(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.api_key = "another-key-entirely-0123456789"
    code, lines, _ = doctor(settings)
    assert code == 1
    found = failures(lines)
    assert len(found) == 8, "\n".join(lines)
    assert "refused the API key for POST /api/two-factor/start (401)" in found[0]
    assert "refused the API key for DELETE /api/jwt/refresh (401)" in found[1]
    assert "refused the API key for GET /api/user-action (401)" in found[2]
    assert "refused the API key for GET /api/user (401)" in found[3]
    assert "refused the API key for DELETE /api/user/two-factor (401)" in found[6]
    assert f"refused the API key for GET /api/application/{APPLICATION_ID} (401)" in found[7]
    assert all("STEPUP_FUSIONAUTH__API_KEY" in line or "GET /api/application" in line for line in found)
    assert any(line.startswith("– the application's settings were not checked") for line in lines)


def test_api_key_without_the_two_factor_endpoint(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.allowed.discard("POST /api/two-factor/start")
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert "POST /api/two-factor/start (401): the key is wrong or lacks this endpoint" in line
    assert (
        "POST /api/two-factor/start, DELETE /api/jwt/refresh, GET /api/application, GET /api/user-action, "
        "GET /api/user, GET /api/two-factor/secret and POST and DELETE /api/user/two-factor"
    ) in line


def test_api_key_without_revocation(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.allowed.discard("DELETE /api/jwt/refresh")
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "DELETE /api/jwt/refresh (401)" in only_failure(lines)


def test_native_sign_in_probes_the_login_api_harmlessly(fake: FakeFusionAuth, tmp_path: Path) -> None:
    code, lines, _ = doctor(make_settings(tmp_path, login={"native": True}))
    assert code == 0, "\n".join(lines)
    assert any(line.startswith("✓ API key may call POST /api/login (login.native)") for line in lines)
    [probe] = [request for request in fake.probes if request.url.path == "/api/login"]
    body = json.loads(probe.content)
    assert set(body) == {"loginId", "password", "applicationId"}
    # A login id in the reserved .invalid domain names nobody: FusionAuth answers 404 and no account is touched.
    local, _, domain = body["loginId"].partition("@")
    assert domain == "doctor.invalid" and uuid.UUID(local.removeprefix("stepup-bff-doctor-")).version == 4
    assert len(body["password"]) >= 24
    assert probe.headers["authorization"] == API_KEY


def test_api_key_without_the_login_api_with_native_sign_in(fake: FakeFusionAuth, tmp_path: Path) -> None:
    fake.allowed.discard("POST /api/login")
    code, lines, _ = doctor(make_settings(tmp_path, login={"native": True}))
    assert code == 1
    line = only_failure(lines)
    assert "refused the API key for POST /api/login (login.native) (401)" in line
    assert "allowed POST /api/login, POST /api/two-factor/start" in line


def test_without_native_sign_in_the_login_api_is_not_probed(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.allowed.discard("POST /api/login")
    code, lines, _ = doctor(settings)
    assert code == 0, "\n".join(lines)
    assert not fake.router["login"].called
    assert not any("/api/login" in line for line in lines)


def test_two_factor_probe_rejected_for_an_unknown_application(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["start"].side_effect = None
    fake.router["start"].respond(
        400, json={"fieldErrors": {"applicationId": [{"code": "[invalid]applicationId", "message": "no"}]}}
    )
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert "HTTP 400 ([invalid]applicationId)" in line
    assert "STEPUP_FUSIONAUTH__APPLICATION_ID" in line


def test_unknown_application(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["application"].side_effect = None
    fake.router["application"].respond(404)
    code, lines, _ = doctor(settings)
    assert code == 1
    assert f"there is no application {APPLICATION_ID}" in only_failure(lines)


def test_inactive_application(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["active"] = False
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "is inactive" in only_failure(lines)


def test_missing_redirect_url(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["oauthConfiguration"]["authorizedRedirectURLs"] = [f"{PUBLIC_URL}/"]
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert f"redirect URL {PUBLIC_URL}/auth/callback is not among the application's authorized redirect URLs" in line
    assert "Authorized redirect URLs" in line.split(" — ", 1)[1]


def test_redirect_url_for_another_public_url(fake: FakeFusionAuth, tmp_path: Path) -> None:
    code, lines, _ = doctor(make_settings(tmp_path, public_url="https://app.example.com"))
    assert code == 1
    found = failures(lines)
    assert "redirect URL https://app.example.com/auth/callback is not among" in found[0]
    assert "post-logout redirect https://app.example.com/ is not an authorized redirect URL" in found[1]
    # FusionAuth on http://localhost while the BFF is public: nobody else's browser reaches it.
    assert "other people's browsers cannot reach it" in found[2]
    assert len(found) == 3


def test_wildcard_redirect_urls(fake: FakeFusionAuth, settings: Settings) -> None:
    oauth = fake.application["oauthConfiguration"]
    oauth["authorizedRedirectURLs"] = ["http://localhost:9000/*"]
    oauth["authorizedURLValidationPolicy"] = "AllowWildcards"
    code, lines, _ = doctor(settings)
    assert code == 0, "\n".join(lines)
    assert f"✓ redirect URL {PUBLIC_URL}/auth/callback is authorized (by http://localhost:9000/*)" in lines


def test_post_logout_redirect_not_authorized(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["oauthConfiguration"]["authorizedRedirectURLs"] = [f"{PUBLIC_URL}/auth/callback"]
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert f"post-logout redirect {PUBLIC_URL}/ is not an authorized redirect URL" in line
    assert f"fall back to the logout URL {PUBLIC_URL}/" in line


@pytest.mark.parametrize("policy", ["NotRequired", "NotRequiredWhenUsingClientAuthentication"])
def test_pkce_not_required(fake: FakeFusionAuth, settings: Settings, policy: str) -> None:
    fake.application["oauthConfiguration"]["proofKeyForCodeExchangePolicy"] = policy
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert f"PKCE policy is {policy}" in line
    assert "set Applications → OAuth → PKCE to Required" in line


def test_client_authentication_not_required(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["oauthConfiguration"]["clientAuthenticationPolicy"] = "NotRequiredWhenUsingPKCE"
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "client authentication policy is NotRequiredWhenUsingPKCE" in only_failure(lines)


def test_refresh_token_grant_disabled(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["oauthConfiguration"]["enabledGrants"] = ["authorization_code"]
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "grants refresh_token not enabled (enabled: authorization_code)" in only_failure(lines)


def test_refresh_tokens_not_generated(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["oauthConfiguration"]["generateRefreshTokens"] = False
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "does not generate refresh tokens" in only_failure(lines)


def test_hs256_only_jwks(fake: FakeFusionAuth, settings: Settings) -> None:
    # FusionAuth itself never publishes HMAC keys; a JWKS like this comes from something else at that URL.
    fake.jwks = {"keys": [{"kty": "oct", "alg": "HS256", "kid": "hmac-1", "use": "sig"}]}
    fake.public_key = None
    code, lines, _ = doctor(settings)
    assert code == 1
    found = failures(lines)
    assert 'JWKS has no RS256 signing key (found: HS256 "hmac-1")' in found[0]
    assert f"no public key for the application's access-token key {KEY_ID}: it is an HMAC" in found[1]
    assert f'the JWKS has no RS256 key "{WEBHOOK_KID}"' in found[2]  # nor the webhook's
    assert len(found) == 3


def test_empty_jwks(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.jwks = {"keys": []}
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "JWKS has no RS256 signing key (found: no keys at all)" in failures(lines)[0]


def test_application_signs_with_hmac(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.public_key = None
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert "it is an HMAC (HS…) key" in line
    assert "generate an RS256 key" in line


def test_application_signs_with_an_ec_key(fake: FakeFusionAuth, settings: Settings) -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    fake.public_key = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    code, lines, _ = doctor(settings)
    assert code == 1
    assert f"access-token key {KEY_ID} is not an RSA key" in only_failure(lines)


def test_application_key_missing_from_the_jwks(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.jwks = jwks("key-2", WEBHOOK_KID)
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "is not in the JWKS" in only_failure(lines)


def test_application_uses_the_tenants_keys(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["jwtConfiguration"] = {"enabled": False}
    code, lines, _ = doctor(settings)
    assert code == 0  # not checkable with this key: said, not failed
    assert any(line.startswith("– token signing keys: the application uses its tenant's keys") for line in lines)
    assert lines[-1].endswith("(1 not checkable).")


def test_separate_id_token_key(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.application["jwtConfiguration"]["idTokenKeyId"] = "0000aaaa-0000-4000-8000-000000000000"
    code, lines, _ = doctor(settings)
    assert code == 0
    assert any(line.startswith("– the id-token key 0000aaaa-") for line in lines)


def test_server_without_the_public_key_api(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.public_key_api = False
    code, lines, _ = doctor(settings)
    assert code == 0
    assert any("this server does not answer GET /api/jwt/public-key" in line for line in lines)


def test_issuer_of_another_tenant(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.tenant_issuer = "https://other-tenant.example.com"
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert 'carry iss "https://other-tenant.example.com"' in line
    assert f'the BFF expects "{ISSUER}"' in line
    assert f"STEPUP_FUSIONAUTH__TENANT_ID) to {TENANT_ID}" in line


def test_discovery_broken(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["discovery"].respond(json={"issuer": ISSUER})  # endpoints missing
    code, lines, _ = doctor(settings)
    assert code == 1
    found = failures(lines)
    assert "OpenID discovery: GET /.well-known/openid-configuration did not return a usable document" in found[0]
    assert any(line.startswith("– client secret not checked") for line in lines)


def test_wrong_client_secret(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.client_secret = "the-real-secret-is-different-0123"
    code, lines, _ = doctor(settings)
    assert code == 1
    line = only_failure(lines)
    assert "refused the client credentials (401 invalid_client: invalid_client_authentication)" in line
    assert "STEPUP_FUSIONAUTH__CLIENT_SECRET" in line


def test_the_client_secret_probe_never_redeems_a_real_code(fake: FakeFusionAuth, settings: Settings) -> None:
    doctor(settings)
    (call,) = fake.router["token"].calls
    form = dict(httpx.QueryParams(call.request.content.decode()))
    assert form["grant_type"] == "authorization_code"
    assert len(form["code"]) >= 43  # 256 random bits: no such code exists
    assert form["redirect_uri"] == f"{PUBLIC_URL}/auth/callback"


def test_placeholders_from_the_example_config(fake: FakeFusionAuth, tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        fusionauth={"client_secret": "set STEPUP_FUSIONAUTH__CLIENT_SECRET"},
        session={"secret_keys": ["replace-me-with-a-random-string-of-32+-chars"]},
    )
    code, lines, _ = doctor(settings)
    assert code == 1
    line = failures(lines)[0]
    assert line.startswith("✗ still the placeholder from config.example.toml: ")
    assert "fusionauth.client_secret" in line and "session.secret_keys[0]" in line
    assert "fusionauth.api_key" not in line


def test_fusionauth_over_plain_http_on_the_network(fake: FakeFusionAuth, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, fusionauth={"public_url": "http://auth.example.com"})
    code, lines, _ = doctor(settings)
    assert code == 1
    assert "passwords would cross the network unencrypted" in only_failure(lines)


def test_a_url_with_credentials_is_printed_without_them(fake: FakeFusionAuth, tmp_path: Path) -> None:
    fake.router["status"].side_effect = httpx.ConnectError("refused")
    settings = make_settings(tmp_path, fusionauth={"url": "http://admin:hunter2@fusionauth.test:9011"})
    _, lines, _ = doctor(settings)
    assert "hunter2" not in "\n".join(lines)
    assert "cannot connect to FusionAuth at http://fusionauth.test:9011" in only_failure(lines)


# -- --wait ---------------------------------------------------------------------------------------------------------


def test_wait_retries_until_fusionauth_is_ready(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["status"].side_effect = [
        httpx.ConnectError("refused"),
        httpx.ConnectError("refused"),
        httpx.Response(200, json={"status": "ok"}),
    ]
    code, lines, err = doctor(settings, wait=10, interval=0.01)
    assert code == 0, "\n".join(lines)
    assert err.count("retrying") == 2
    assert not failures(lines)  # only the last run is printed


def test_wait_gives_up(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.router["status"].side_effect = httpx.ConnectError("refused")
    code, lines, _ = doctor(settings, wait=0.1, interval=0.01)
    assert code == 1
    assert fake.router["status"].call_count > 1
    assert "cannot connect" in only_failure(lines)


# -- the command ----------------------------------------------------------------------------------------------------


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"""
public_url = "{PUBLIC_URL}"
[fusionauth]
url = "{FA_URL}"
public_url = "http://localhost:9011"
api_key = "{API_KEY}"
application_id = "{APPLICATION_ID}"
client_secret = "{CLIENT_SECRET}"
[session]
secret_keys = ["{SECRET_KEY}"]
[storage]
url = "sqlite:///{tmp_path / "store.sqlite3"}"
""",
        encoding="utf-8",
    )
    return path


def test_the_command_exits_0_when_everything_passes(
    fake: FakeFusionAuth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["doctor", "--config", str(_config_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.startswith("✓ ") and "All " in out
    assert all(secret not in out for secret in SECRETS)


def test_the_command_exits_1_when_a_check_fails(
    fake: FakeFusionAuth, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.application["oauthConfiguration"]["proofKeyForCodeExchangePolicy"] = "NotRequired"
    assert main(["doctor", "--config", str(_config_file(tmp_path)), "--wait", "0"]) == 1
    assert "✗ PKCE policy is NotRequired" in capsys.readouterr().out


def test_the_command_exits_2_on_a_configuration_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- against the dev server seeded from the real kickstart files -----------------------------------------------------

KICKSTART_ENV = {
    "FUSIONAUTH_ADMIN_API_KEY": "doctor-admin-key-0123456789abcdef",
    "FUSIONAUTH_BFF_API_KEY": "doctor-bff-key-0123456789abcdef",
    "FUSIONAUTH_CLIENT_SECRET": "doctor-client-secret-0123456789",
    "BFF_WEBHOOK_URL": "http://localhost:9000/webhooks/fusionauth",
}


@pytest.mark.live
@pytest.mark.parametrize(
    "files", [["kickstart.json"], ["kickstart.json", "email-mfa.json"]], ids=["community", "with-email-overlay"]
)
def test_the_dev_server_seeded_from_the_kickstart_files_passes(tmp_path: Path, files: list[str]) -> None:
    server = create_dev_server([ROOT / "kickstart" / name for name in files], env=KICKSTART_ENV)
    with serve(server.app) as live:
        settings = make_settings(
            tmp_path,
            fusionauth={
                "url": live.url,
                "api_key": KICKSTART_ENV["FUSIONAUTH_BFF_API_KEY"],
                "client_secret": KICKSTART_ENV["FUSIONAUTH_CLIENT_SECRET"],
                "webhook_key_id": "stepup-bff-webhooks",
            },
            login={"native": True},  # as `stepup-bff dev` and docker-compose run it
        )
        out, err = io.StringIO(), io.StringIO()
        code = asyncio.run(run_doctor(settings, out=out, err=err))
    lines = out.getvalue().splitlines()
    assert code == 0, out.getvalue()
    for line in lines[:-1]:
        assert line.startswith("✓ "), out.getvalue()
    # FusionAuth's anonymous public-key API (GET /api/jwt/public-key) is what shows the application's key is RS256.
    assert any(line.startswith("✓ access-token signing key: RS256") for line in lines), out.getvalue()
    assert any(line.startswith("✓ API key may call POST /api/login") for line in lines), out.getvalue()
    assert len(lines) > 15
    assert all(value not in out.getvalue() for name, value in KICKSTART_ENV.items() if name != "BFF_WEBHOOK_URL")
    # The webhook, its own key and the tenant's events, as kickstart makes them.
    assert "✓ a webhook posts to http://localhost:9000/webhooks/fusionauth" in lines, out.getvalue()
    assert '✓ the webhook is signed with its own RS256 key "stepup-bff-webhooks"' in lines


# -- the webhook ----------------------------------------------------------------------------------------------------


def test_the_webhook_checks_pass_and_name_the_key(fake: FakeFusionAuth, settings: Settings) -> None:
    _, lines, _ = doctor(settings)
    assert f"✓ a webhook posts to {WEBHOOK_URL}" in lines
    assert f'✓ the webhook is signed with its own RS256 key "{WEBHOOK_KID}"' in lines
    assert any(line.startswith("✓ the tenant enables jwt.refresh-token.revoke") for line in lines)
    assert "✓ API key may call GET /api/user-action (probed with a made-up user action id: 404)" in lines


def test_without_a_webhook_key_the_webhook_is_not_checked(fake: FakeFusionAuth, tmp_path: Path) -> None:
    code, lines, _ = doctor(make_settings(tmp_path))
    assert code == 0
    assert any(line.startswith("– webhooks are off") for line in lines)


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda fake: fake.webhooks.clear(), f"✗ no webhook posts to {WEBHOOK_URL}"),
        (lambda fake: fake.webhooks[0].update(url="http://elsewhere/hook"), "✗ no webhook posts to"),
        (lambda fake: fake.webhooks[0]["eventsEnabled"].pop("user.delete"), "✗ the webhook does not send user.delete"),
        (
            lambda fake: fake.webhooks[0].update(signatureConfiguration={"enabled": False}),
            "✗ the webhook is not signed",
        ),
        (
            lambda fake: fake.webhooks[0]["signatureConfiguration"].update(signingKeyId=KEY_ID),
            "✗ the webhook is signed with the key that signs tokens",
        ),
        (
            lambda fake: fake.webhook_key.update(kid="other"),
            '✗ the webhook is signed with the key whose kid is "other"',
        ),
        (lambda fake: fake.webhook_key.update(algorithm="HS256"), "✗ the webhook key is HS256"),
        (lambda fake: fake.jwks.update(jwks("key-1")), f'✗ the JWKS has no RS256 key "{WEBHOOK_KID}"'),
        (
            lambda fake: fake.webhooks[0].update(tenantIds=[], **{"global": False}),
            "✗ the webhook is not used for tenant",
        ),
        (lambda fake: fake.tenant_events.pop("user.deactivate"), "✗ the tenant does not enable user.deactivate"),
        (
            lambda fake: fake.tenant_events["user.delete"].update(transactionType="Any"),
            "✗ user.delete are transactional",
        ),
    ],
    ids=[
        "none",
        "another url",
        "an event missing",
        "unsigned",
        "token key",
        "other kid",
        "hmac key",
        "not in the jwks",
        "other tenant",
        "tenant event off",
        "transactional",
    ],
)
def test_each_webhook_misconfiguration_is_named(
    fake: FakeFusionAuth, settings: Settings, breakage: Any, expected: str
) -> None:
    breakage(fake)
    code, lines, _ = doctor(settings)
    assert code == 1
    assert only_failure(lines).startswith(expected), "\n".join(lines)


def test_a_key_that_may_not_read_the_webhook_setup_is_reported_not_failed(
    fake: FakeFusionAuth, settings: Settings
) -> None:
    fake.allowed -= {"GET /api/webhook", "GET /api/key", "GET /api/tenant"}
    code, lines, _ = doctor(settings)
    assert code == 0, "\n".join(lines)
    assert any(line.startswith("– the webhook was not checked") for line in lines)
    assert any(line.startswith("– the tenant's events were not checked") for line in lines)


def test_only_the_key_read_being_refused_skips_the_kid_comparison(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.allowed -= {"GET /api/key"}  # FusionAuth allows /api/key only to keys for all tenants
    code, lines, _ = doctor(settings)
    assert code == 0
    assert any(line.startswith(f"– the webhook's signing key {WEBHOOK_KEY_UUID} was not compared") for line in lines)


def test_a_key_without_user_actions_fails(fake: FakeFusionAuth, settings: Settings) -> None:
    fake.allowed -= {"GET /api/user-action"}
    _, lines, _ = doctor(settings)
    assert only_failure(lines).startswith("✗ FusionAuth refused the API key for GET /api/user-action (401)")
