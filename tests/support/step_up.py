"""Step-up as the SPA drives it, for tests that need a privileged request to go through.

send_telegram is bound to its transaction by default: `confirm()` sends the request, reads the transaction from the
401, starts a step-up for it, finishes it with a code and sends the very same request again (the SPA's retry).
`UNBOUND` is the step_up setting that makes send_telegram an action of the time window again, for tests of the
machinery every unbound action shares (max_age, single_use, limits).
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.testclient import TestClient

from stepup_bff.clock import Clock
from support.two_factor import VALID_CODE

PUBLIC_URL = "http://localhost:9000"
JSON_HEADERS = {"X-CSRF": "1", "Origin": PUBLIC_URL}
TELEGRAM = {"recipient": "Bob", "message": "Happy birthday, sung by a baritone"}
UNBOUND: dict[str, Any] = {"actions": {"send_telegram": {"bind_transaction": False}}}


LOCKOUT_ACTION = "10c0a471-6c2d-4e3f-8a9b-000000000001"


def lock(clock: Clock, *ends_in: float) -> dict[str, Any]:
    """FusionAuth's 409 body (LoginPreventedResponse, docs/fusionauth.md §4): one temporal action per end, as the
    tenant's failed-authentication lockout gives it."""
    return {
        "actions": [
            {
                "actionId": LOCKOUT_ACTION,
                "expiry": int((clock.now() + seconds) * 1000),
                "name": "Locked after too many failed sign-in attempts",
                "reason": "Too many failed authentication attempts",
            }
            for seconds in ends_in
        ]
    }


def unbound(**step_up: Any) -> dict[str, Any]:
    """step_up settings with send_telegram unbound, plus `step_up`."""
    return {**UNBOUND, **step_up}


def post(client: TestClient, path: str, body: dict[str, Any] | None = None, **headers: str) -> httpx.Response:
    return client.post(path, json=body if body is not None else {}, headers={**JSON_HEADERS, **headers})


def challenge_of(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "insufficient_user_authentication", body
    return body


def confirm_transaction(client: TestClient, refused: httpx.Response, code: str = VALID_CODE) -> httpx.Response:
    """Start and finish the step-up the 401 `refused` asks for; the finish's answer."""
    transaction = challenge_of(refused)["transaction"]
    started = post(client, "/api/step-up/start", {"transaction_id": transaction["id"]})
    assert started.status_code == 200, started.text
    return post(client, "/api/step-up/finish", {"code": code})


def confirm(
    client: TestClient, body: dict[str, Any] | None = None, path: str = "/api/telegrams", **headers: str
) -> httpx.Response:
    """The privileged request through its bound step-up, as the SPA sends it: refused, confirmed, sent again."""
    body = TELEGRAM if body is None else body
    refused = post(client, path, body, **headers)
    finished = confirm_transaction(client, refused)
    assert finished.status_code == 200, finished.text
    return post(client, path, body, **headers)
