"""A scripted FusionAuth Login API for respx (docs/fusionauth.md §5): accounts with passwords, a login policy that
asks for the second factor (242), and the two-factor calls that finish such a sign-in with real RS256 tokens (§3,
§4). Every value that must never reach the browser or a log is collected in `secrets`."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import respx

from support.fake_fusionauth import USER_ID, TokenFactory
from support.two_factor import AUTHENTICATOR, EMAIL, VALID_CODE

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    first_name: str
    last_name: str
    password: str = PASSWORD


ALICE = Account(USER_ID, "alice@example.com", "Alice", "Example")
BOB = Account("00000000-0000-0000-0000-00000000b0b0", "bob@example.com", "Bob", "Example")


class FakeLogin:
    def __init__(self, router: respx.MockRouter, tokens: TokenFactory, api_key: str) -> None:
        self.tokens = tokens
        self.api_key = api_key
        self.accounts = {account.email: account for account in (ALICE, BOB)}
        self.second_factor = False  # the login policy: True answers 242 for every correct password
        self.methods: list[dict[str, Any]] = [AUTHENTICATOR, EMAIL]
        self.pending: dict[str, Account] = {}  # twoFactorId -> whose sign-in
        self.sent: list[tuple[str, str]] = []
        self.secrets: list[str] = []
        router["login"].side_effect = self.login
        router["two_factor_login"].side_effect = self.two_factor_login
        router["two_factor_send"].side_effect = self.send

    def login(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != self.api_key:
            return httpx.Response(401)
        body = json.loads(request.content)
        account = self.accounts.get(body["loginId"].strip().lower())
        if account is None or body["password"] != account.password:
            return httpx.Response(404)
        if self.second_factor:
            two_factor_id = "TFID-" + secrets.token_urlsafe(16)
            self.pending[two_factor_id] = account
            self.secrets.append(two_factor_id)
            payload: dict[str, Any] = {"twoFactorId": two_factor_id}
            if self.methods:
                payload["methods"] = self.methods
            else:
                payload["configurableMethods"] = ["authenticator"]
            return httpx.Response(242, json=payload)
        return self.signed_in(account)

    def signed_in(self, account: Account, status: int = 200) -> httpx.Response:
        token = self.tokens.access_token(sub=account.id, email=account.email)
        refresh = self.tokens.refresh_token(account.id)
        self.secrets += [token, refresh]
        return httpx.Response(
            status,
            json={
                "token": token,
                "tokenExpirationInstant": int(self.tokens.now + 3600) * 1000,
                "refreshToken": refresh,
                "refreshTokenId": "rt-" + secrets.token_hex(4),
                "user": {
                    "id": account.id,
                    "email": account.email,
                    "firstName": account.first_name,
                    "lastName": account.last_name,
                },
            },
            # FusionAuth sets these too; a BFF must not relay them (docs/fusionauth.md §4).
            headers={"Set-Cookie": f"access_token={token}; Path=/; HttpOnly"},
        )

    def send(self, request: httpx.Request, two_factor_id: str) -> httpx.Response:
        if two_factor_id not in self.pending:
            return httpx.Response(404)
        self.sent.append((two_factor_id, json.loads(request.content)["methodId"]))
        return httpx.Response(200)

    def two_factor_login(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        account = self.pending.get(body["twoFactorId"])
        if account is None:
            return httpx.Response(404)
        if body["code"] != VALID_CODE:
            return httpx.Response(421)
        del self.pending[body["twoFactorId"]]
        return self.signed_in(account)
