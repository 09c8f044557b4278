"""The dev server's webhooks (docs/fusionauth.md §14): kickstart creates a signed webhook with a key of its own and
turns the events on for the tenant; deactivating or deleting a user and revoking refresh tokens (by the management API
or the /_dev page's buttons) send the events, signed as FusionAuth signs them, to a real HTTP receiver."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jose import jws
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fusionauth_dev import DevServer
from support.live_server import serve

from .conftest import ADMIN_KEY, APPLICATION_ID, BFF_KEY, TENANT_ID

ALICE = "a11ce000-0000-4000-8000-000000000001"
DAVE = "da7e0000-0000-4000-8000-000000000004"
WEBHOOK_ID = "3e6b0000-7c1d-4b2a-9e5f-000000000001"
WEBHOOK_KID = "stepup-bff-webhooks"
ADMIN = {"Authorization": ADMIN_KEY}


class Receiver:
    """A webhook receiver that records what arrives (body, headers) and answers 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = threading.Condition()

        async def hook(request: Request) -> Response:
            body = await request.body()
            with self.arrived:
                self.received.append((body, dict(request.headers)))
                self.arrived.notify_all()
            return Response(status_code=200)

        self.app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])

    def wait(self, count: int) -> list[tuple[dict[str, Any], dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout=10), self.received
        return [(json.loads(body)["event"], headers, body) for body, headers in self.received]


@pytest.fixture
def receiver(client: TestClient) -> Iterator[Receiver]:
    """A live receiver, and the kickstart's webhook pointed at it (as the dev stack points it at its BFF)."""
    receiving = Receiver()
    with serve(receiving.app) as live:
        patched = client.patch(
            f"/api/webhook/{WEBHOOK_ID}", json={"webhook": {"url": f"{live.url}/hook"}}, headers=ADMIN
        )
        assert patched.status_code == 200, patched.text
        yield receiving


def _verify(event_body: bytes, headers: dict[str, str], client: TestClient) -> None:
    """What the BFF checks: the kid is the webhook key's, the signature verifies with the JWKS, the hash matches."""
    signature = headers["x-fusionauth-signature-jwt"]
    header = jws.get_unverified_header(signature)
    assert (header["alg"], header["kid"], header["typ"]) == ("RS256", WEBHOOK_KID, "JWT")
    keys = {key["kid"]: key for key in client.get("/.well-known/jwks.json").json()["keys"]}
    claims = json.loads(jws.verify(signature, keys[WEBHOOK_KID], algorithms=["RS256"]))
    assert claims == {"request_body_sha256": base64.b64encode(hashlib.sha256(event_body).digest()).decode()}
    assert headers["content-type"] == "application/json"


def test_kickstart_creates_a_signed_webhook_with_a_key_of_its_own_and_non_transactional_events(
    client: TestClient,
) -> None:
    webhook = client.get(f"/api/webhook/{WEBHOOK_ID}", headers=ADMIN).json()["webhook"]
    assert webhook["url"] == "http://localhost:9000/webhooks/fusionauth"
    assert webhook["global"] is True
    assert set(webhook["eventsEnabled"]) >= {"jwt.refresh-token.revoke", "user.deactivate", "user.delete"}
    key_id = webhook["signatureConfiguration"]["signingKeyId"]
    key = client.get(f"/api/key/{key_id}", headers={"Authorization": BFF_KEY}).json()["key"]
    assert (key["kid"], key["algorithm"]) == (WEBHOOK_KID, "RS256")
    application = client.get(f"/api/application/{APPLICATION_ID}", headers=ADMIN).json()["application"]
    assert key_id != application["jwtConfiguration"]["accessTokenKeyId"]  # never the token-signing key
    events = client.get(f"/api/tenant/{TENANT_ID}", headers=ADMIN).json()["tenant"]["eventConfiguration"]["events"]
    for name in ("jwt.refresh-token.revoke", "user.deactivate", "user.delete"):
        assert events[name] == {"enabled": True, "transactionType": "None"}
    # The BFF's key may read it (doctor does), but not change it.
    assert client.get("/api/webhook", headers={"Authorization": BFF_KEY}).status_code == 200
    refused = client.patch(f"/api/webhook/{WEBHOOK_ID}", json={"webhook": {}}, headers={"Authorization": BFF_KEY})
    assert refused.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"connectTimeout": 1000, "readTimeout": 2000}, "webhook.url"),
        ({"url": "http://x/hook", "readTimeout": 2000}, "webhook.connectTimeout"),
        (
            {
                "url": "http://x/hook",
                "connectTimeout": 1000,
                "readTimeout": 2000,
                "signatureConfiguration": {"enabled": True},
            },
            "webhook.signatureConfiguration.signingKeyId",
        ),
    ],
)
def test_creating_a_webhook_validates_it(client: TestClient, body: dict[str, Any], field: str) -> None:
    response = client.post("/api/webhook", json={"webhook": body}, headers=ADMIN)
    assert response.status_code == 400
    assert field in response.json()["fieldErrors"]


def test_deactivating_a_user_sends_a_signed_user_deactivate(
    client: TestClient, receiver: Receiver, server: DevServer
) -> None:
    assert client.delete(f"/api/user/{DAVE}", headers=ADMIN).status_code == 200
    ((event, headers, body),) = receiver.wait(1)
    _verify(body, headers, client)
    assert event["type"] == "user.deactivate"
    assert event["user"]["id"] == DAVE and event["user"]["active"] is False
    assert event["tenantId"] == TENANT_ID
    assert event["createInstant"] == int(server.clock.now() * 1000)  # epoch milliseconds
    assert server.directory.events.deliveries[-1].status == 200


def test_deleting_a_user_sends_user_delete_and_delete_complete(client: TestClient, receiver: Receiver) -> None:
    assert client.delete(f"/api/user/{DAVE}", params={"hardDelete": "true"}, headers=ADMIN).status_code == 200
    events = receiver.wait(2)
    # Two deliveries, each on its own: neither the dev server nor FusionAuth promises their order of arrival.
    assert sorted(event["type"] for event, _, _ in events) == ["user.delete", "user.delete.complete"]
    assert len({event["id"] for event, _, _ in events}) == 2


def test_revoking_refresh_tokens_sends_jwt_refresh_token_revoke(
    client: TestClient, receiver: Receiver, server: DevServer
) -> None:
    directory = server.directory
    login = client.post(
        "/api/login",
        json={"loginId": "dave@example.com", "password": "stepup-demo", "applicationId": APPLICATION_ID},
        headers={"Authorization": BFF_KEY},
    ).json()
    token_id = login["refreshTokenId"]
    assert client.delete(f"/api/jwt/refresh/{token_id}", headers=ADMIN).status_code == 200
    ((one, _, _),) = receiver.wait(1)
    assert one["type"] == "jwt.refresh-token.revoke"
    assert (one["userId"], one["refreshToken"]["id"], one["applicationId"]) == (DAVE, token_id, APPLICATION_ID)
    # All of a user's, for this application: no refreshToken, the user and the application named.
    client.post(
        "/api/login",
        json={"loginId": "dave@example.com", "password": "stepup-demo", "applicationId": APPLICATION_ID},
        headers={"Authorization": BFF_KEY},
    )
    response = client.delete(
        "/api/jwt/refresh", params={"userId": DAVE, "applicationId": APPLICATION_ID}, headers=ADMIN
    )
    assert response.status_code == 200
    _, (everything, _, _) = receiver.wait(2)
    assert "refreshToken" not in everything
    assert (everything["userId"], everything["applicationId"]) == (DAVE, APPLICATION_ID)
    assert everything["applicationTimeToLiveInSeconds"] == {APPLICATION_ID: 300}
    # Nothing left to revoke: FusionAuth sends the event only when a valid token was revoked.
    client.delete("/api/jwt/refresh", params={"userId": DAVE}, headers=ADMIN)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline and len(directory.events.deliveries) == 2:
        time.sleep(0.05)
    assert len(directory.events.deliveries) == 2


def test_an_event_the_tenant_does_not_enable_is_not_sent(client: TestClient, server: DevServer) -> None:
    off = {"tenant": {"eventConfiguration": {"events": {"user.deactivate": {"enabled": False}}}}}
    assert client.patch(f"/api/tenant/{TENANT_ID}", json=off, headers=ADMIN).status_code == 200
    assert client.delete(f"/api/user/{DAVE}", headers=ADMIN).status_code == 200
    assert server.directory.events.deliveries == []


def test_an_unreachable_receiver_is_recorded_and_the_operation_stands(client: TestClient, server: DevServer) -> None:
    client.patch(f"/api/webhook/{WEBHOOK_ID}", json={"webhook": {"url": "http://127.0.0.1:9/hook"}}, headers=ADMIN)
    assert client.delete(f"/api/user/{DAVE}", headers=ADMIN).status_code == 200  # non-transactional
    assert client.get(f"/api/user/{DAVE}", headers=ADMIN).json()["user"]["active"] is False
    deadline = time.monotonic() + 10
    while server.directory.events.deliveries[-1].error is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.directory.events.deliveries[-1].error == "ConnectError"


def test_the_dev_page_has_buttons_that_send_the_webhooks(client: TestClient, receiver: Receiver) -> None:
    page = client.get("/_dev").text
    assert 'data-testid="deactivate-alice@example.com"' in page
    assert f'action="/_dev/users/{ALICE}/revoke"' in page
    answer = client.post(f"/_dev/users/{ALICE}/deactivate", headers={"Origin": "http://testserver"})
    assert answer.status_code == 303 and answer.headers["location"] == "/_dev"
    ((event, _, _),) = receiver.wait(1)
    assert (event["type"], event["user"]["id"]) == ("user.deactivate", ALICE)
    assert 'data-testid="reactivate-alice@example.com"' in client.get("/_dev").text
    assert "user.deactivate" in client.get("/_dev").text  # the log of what was sent
    assert client.get("/_dev/webhooks").json()[-1]["status"] == 200
    # Another site's page cannot press the buttons.
    refused = client.post(f"/_dev/users/{ALICE}/delete", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 401
    refused = client.post(f"/_dev/users/{ALICE}/delete", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 401
    assert client.get(f"/api/user/{ALICE}", headers=ADMIN).status_code == 200
