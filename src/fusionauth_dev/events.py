"""Events and webhooks, as FusionAuth sends them (docs/fusionauth.md §14).

An event is sent to every webhook that enables its type and covers its tenant (``global`` or ``tenantIds``), and only
when the tenant enables it (``tenant.eventConfiguration.events[type].enabled``): the three switches. Each request is
a ``POST`` of ``{"event": {...}}`` (``id``, ``type``, ``createInstant`` in epoch milliseconds, ``tenantId``, the
event's own fields), ``Content-Type: application/json``, the webhook's ``headers``, and, with
``signatureConfiguration.enabled``, ``X-FusionAuth-Signature-JWT``: a JWS signed with the webhook's Key Master key
whose one claim ``request_body_sha256`` is the standard base64 of SHA-256 over the body.

Delivery here is always non-transactional (FusionAuth's ``transactionType: None``): the operation has happened
whatever the receiver answers, the request leaves after the API call that caused it has been answered, and a failure
is recorded, not retried. ``Webhooks.deliveries`` keeps what was sent and how it was answered (the /_dev page shows
it; tests wait on it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from jose import jws

from fusionauth_dev import identifiers

if TYPE_CHECKING:
    from fusionauth_dev.directory import Directory

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FusionAuth-Signature-JWT"
MAX_DELIVERIES = 200


@dataclass
class Delivery:
    event_id: str
    type: str
    url: str
    sent_at: float
    status: int | None = None  # None while in flight, or when it failed without an answer
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "eventId": self.event_id,
            "type": self.type,
            "url": self.url,
            "sentAt": self.sent_at,
            "status": self.status,
            "error": self.error,
        }


def body_signature(body: bytes, *, private_pem: str, kid: str, algorithm: str) -> str:
    claim = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
    return jws.sign(
        {"request_body_sha256": claim}, private_pem, algorithm=algorithm, headers={"kid": kid, "typ": "JWT"}
    )


class Webhooks:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, directory: Directory, event_type: str, *, tenant_id: str, **fields: Any) -> dict[str, Any] | None:
        """Send `event_type` to every webhook that takes it; the event, or None if the tenant does not enable it."""
        tenant = directory.tenant_of(tenant_id)
        configured = ((tenant.data.get("eventConfiguration") or {}).get("events") or {}).get(event_type) or {}
        if not configured.get("enabled"):
            return None
        event = {
            "id": identifiers.new_uuid(),
            "type": event_type,
            "createInstant": directory.now_millis(),
            "tenantId": tenant.id,
            **fields,
        }
        body = json.dumps({"event": event}, separators=(",", ":")).encode()
        for hook in list(directory.webhooks.values()):
            if not (hook.get("eventsEnabled") or {}).get(event_type):
                continue
            if not (hook.get("global") or tenant.id in (hook.get("tenantIds") or [])):
                continue
            self._send(directory, hook, event, body)
        return event

    def _send(self, directory: Directory, hook: dict[str, Any], event: dict[str, Any], body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            **{str(k): str(v) for k, v in (hook.get("headers") or {}).items()},
        }
        signature = hook.get("signatureConfiguration") or {}
        if signature.get("enabled"):
            key = directory.keys.get(str(signature.get("signingKeyId") or ""))
            if key is None:
                logger.warning("webhook %s: its signing key is gone; not sent", hook.get("id"))
                return
            headers[SIGNATURE_HEADER] = body_signature(
                body, private_pem=key.private_pem(), kid=key.kid, algorithm=key.algorithm
            )
        delivery = Delivery(str(event["id"]), str(event["type"]), str(hook["url"]), directory.now())
        self.deliveries.append(delivery)
        del self.deliveries[:-MAX_DELIVERIES]
        timeout = httpx.Timeout(
            float(hook.get("readTimeout") or 2000) / 1000, connect=float(hook.get("connectTimeout") or 1000) / 1000
        )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            delivery.error = "not serving yet"  # kickstart, applied before the server runs
            return
        task = loop.create_task(_deliver(delivery, body, headers, timeout))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every delivery in flight (tests, and the server's shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


async def _deliver(delivery: Delivery, body: bytes, headers: dict[str, str], timeout: httpx.Timeout) -> None:
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(delivery.url, content=body, headers=headers)
        delivery.status = response.status_code
    except httpx.HTTPError as exc:
        delivery.error = type(exc).__name__
    if delivery.status is None or not 200 <= delivery.status < 300:
        logger.warning("webhook %s to %s failed: %s", delivery.type, delivery.url, delivery.status or delivery.error)
