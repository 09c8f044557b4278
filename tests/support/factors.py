"""A scripted FusionAuth for the second factors a person manages (docs/fusionauth.md §8), for respx: the User API's
methods, Generate a Secret, Enable and Disable Multi-Factor, and recovery codes. It shares its methods with a
FakeTwoFactor, so that a step-up offers what was enrolled and accepts its codes."""

from __future__ import annotations

import base64
import json
import secrets
import string
from typing import Any

import httpx
import pyotp
import respx

from support.two_factor import VALID_CODE, FakeTwoFactor


def totp_of_base64(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(base64.b32encode(base64.b64decode(secret)).decode())


class FakeFactors:
    def __init__(self, router: respx.MockRouter, two_factor: FakeTwoFactor) -> None:
        self.two_factor = two_factor
        self.methods = two_factor.methods  # the very list: what is enrolled here is what step-up offers
        self.secrets: dict[str, str] = {}  # method id -> base64 secret (of the methods enrolled here)
        self.issued_secrets: list[str] = []  # every secret handed out, base64 and base32
        self.recovery_codes: set[str] = set()
        self.answered_recovery_codes: list[str] = []
        self.enabled: list[dict[str, Any]] = []  # the bodies FusionAuth was sent
        self.disabled: list[dict[str, Any]] = []
        router["user"].side_effect = self.user
        router["two_factor_secret"].side_effect = self.secret
        router["enable_two_factor"].side_effect = self.enable
        router["disable_two_factor"].side_effect = self.disable
        two_factor.accept_code = self.accepts  # step-up takes enrolled apps' codes and recovery codes too

    @property
    def user_id(self) -> str:
        return self.two_factor.user_id

    def accepts(self, code: str) -> bool:
        if code == VALID_CODE or any(totp_of_base64(secret).verify(code) for secret in self.secrets.values()):
            return True
        if code in self.recovery_codes:
            self.recovery_codes.discard(code)
            return True
        return False

    def user(self, request: httpx.Request, user_id: str) -> httpx.Response:
        if user_id != self.user_id:
            return httpx.Response(404)
        # What a User object may carry and the BFF must never pass on: each method's secret, the recovery codes.
        methods = [{**method, "secret": "SEEDED-SECRET-" + method["id"]} for method in self.methods]
        user = {
            "id": self.user_id,
            "email": "alice@example.com",
            "twoFactor": {"methods": methods, "recoveryCodes": ["STORED-RECOVERY"]},
        }
        return httpx.Response(200, json={"user": user})

    def secret(self, request: httpx.Request) -> httpx.Response:
        raw = secrets.token_bytes(20)
        secret, base32 = base64.b64encode(raw).decode(), base64.b32encode(raw).decode()
        self.issued_secrets += [secret, base32]
        return httpx.Response(200, json={"secret": secret, "secretBase32Encoded": base32})

    def enable(self, request: httpx.Request, user_id: str) -> httpx.Response:
        body = json.loads(request.content)
        self.enabled.append(body)
        if user_id != self.user_id:
            return httpx.Response(404)
        if not totp_of_base64(body["secret"]).verify(body["code"]):
            return httpx.Response(421)
        method_id = "".join(secrets.choice(string.ascii_uppercase) for _ in range(4))
        method: dict[str, Any] = {"id": method_id, "method": "authenticator", "lastUsed": False}
        if body.get("name"):
            method["name"] = body["name"]
        first = not self.methods
        self.methods.append(method)
        self.secrets[method_id] = body["secret"]
        if not first:
            return httpx.Response(200)
        codes = [f"{secrets.token_hex(3).upper()[:5]}-{secrets.token_hex(3).upper()[:5]}" for _ in range(10)]
        self.recovery_codes = set(codes)
        self.answered_recovery_codes = codes
        return httpx.Response(200, json={"recoveryCodes": codes})

    def disable(self, request: httpx.Request, user_id: str) -> httpx.Response:
        body = json.loads(request.content)
        self.disabled.append(body)
        if user_id != self.user_id:
            return httpx.Response(404)
        method = next((m for m in self.methods if m["id"] == body.get("methodId")), None)
        if method is None:
            return httpx.Response(400, json={"fieldErrors": {"methodId": [{"code": "[invalid]methodId"}]}})
        code = body["code"]
        if code in self.recovery_codes:
            self.methods.clear()
            self.secrets.clear()
            self.recovery_codes = set()
            return httpx.Response(200)
        secret = self.secrets.get(method["id"])
        if not (code == VALID_CODE if secret is None else totp_of_base64(secret).verify(code)):
            return httpx.Response(421)
        self.methods.remove(method)
        self.secrets.pop(method["id"], None)
        if not self.methods:
            self.recovery_codes = set()
        return httpx.Response(200)
