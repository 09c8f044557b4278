"""A scripted FusionAuth two-factor API for respx: start issues a twoFactorId and a live start code, send records
what was sent, login checks the code and echoes the state, as docs/fusionauth.md (§2-§4) describes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx
import respx

from support.fake_fusionauth import USER_ID

AUTHENTICATOR = {
    "id": "AUTH",
    "method": "authenticator",
    "name": "Phone",
    "authenticator": {"algorithm": "HmacSHA1", "codeLength": 6, "timeStep": 30},
    "lastUsed": True,
}
EMAIL = {"id": "MAIL", "method": "email", "email": "richard@piedpiper.com"}
SMS = {"id": "TEXT", "method": "sms", "mobilePhone": "+13035551212"}
VALID_CODE = "123456"


class FakeTwoFactor:
    def __init__(self, router: respx.MockRouter, *, methods: list[dict[str, Any]] | None = None) -> None:
        self.methods = [AUTHENTICATOR, EMAIL] if methods is None else methods
        self.user_id = USER_ID
        self.issued: dict[str, Any] = {}  # twoFactorId -> state
        self.start_codes: list[str] = []
        self.sent: list[tuple[str, str]] = []  # (twoFactorId, methodId)
        self.secrets: list[str] = []  # every value that must never reach the browser or a log
        # Which codes complete a challenge (support.factors adds the apps it enrols and the recovery codes).
        self.accept_code: Callable[[str], bool] = lambda code: code == VALID_CODE
        router["two_factor_start"].side_effect = self.start
        router["two_factor_send"].side_effect = self.send
        router["two_factor_login"].side_effect = self.login

    def start(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        two_factor_id = "TFID-" + secrets.token_urlsafe(16)
        code = "START-" + secrets.token_hex(6)
        self.issued[two_factor_id] = body.get("state")
        self.start_codes.append(code)
        self.secrets += [two_factor_id, code]
        payload: dict[str, Any] = {"code": code, "twoFactorId": two_factor_id}
        if self.methods:
            payload["methods"] = self.methods
        return httpx.Response(200, json=payload, headers={"Set-Cookie": "fusionauth.sso=leak; Path=/"})

    def send(self, request: httpx.Request, two_factor_id: str) -> httpx.Response:
        if two_factor_id not in self.issued:
            return httpx.Response(404)
        self.sent.append((two_factor_id, json.loads(request.content)["methodId"]))
        return httpx.Response(200)

    def login(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["twoFactorId"] not in self.issued:
            return httpx.Response(404)
        if not self.accept_code(body["code"]):
            return httpx.Response(421)
        state = self.issued.pop(body["twoFactorId"])
        token = "eyJ-access-token-" + secrets.token_hex(4)
        self.secrets.append(token)
        return httpx.Response(
            200,
            json={
                "user": {"id": self.user_id, "email": "alice@example.com"},
                "state": state,
                "token": token,
                "refreshToken": "refresh-" + secrets.token_hex(4),
                "trustToken": "trust-" + secrets.token_hex(4),
            },
            headers={"Set-Cookie": f"access_token={token}; Path=/; HttpOnly"},
        )
