"""The dev console: what a person trying the demo needs instead of a phone and a mailbox.

``GET /_dev`` (HTML, refreshes itself), ``GET /_dev/messages`` (the outbox, newest last), ``GET /_dev/totp`` (the
current code of every authenticator method) and ``GET /_dev/webhooks`` (the webhooks sent, newest last). Its buttons
do what an administrator would at FusionAuth: ``POST /_dev/users/{id}/deactivate|reactivate|delete|revoke``, each
sending its webhook. Served only when ``DevSettings.dev_console`` is on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from fusionauth_dev import grants, management, pages, totp
from fusionauth_dev.deps import DirectoryDep
from fusionauth_dev.directory import Directory
from fusionauth_dev.errors import NotFound, Unauthorized

router = APIRouter(prefix="/_dev")


def current_totp_codes(directory: Directory) -> list[dict[str, Any]]:
    now = directory.now()
    rows = []
    for user in directory.users.values():
        for method in user.methods:
            secret = user.secrets.get(str(method.get("id")))
            if method.get("method") != "authenticator" or not secret:
                continue
            settings = method.get("authenticator") or {}
            step = int(settings.get("timeStep", totp.DEFAULT_TIME_STEP))
            rows.append(
                {
                    "userId": user.id,
                    "loginId": user.login_label,
                    "methodId": method["id"],
                    "name": method.get("name") or "Authenticator",
                    "code": totp.code_at(
                        secret,
                        now,
                        algorithm=str(settings.get("algorithm", totp.DEFAULT_ALGORITHM)),
                        digits=int(settings.get("codeLength", totp.DEFAULT_CODE_LENGTH)),
                        step=step,
                    ),
                    "secondsLeft": totp.seconds_left(now, step),
                }
            )
    return rows


@router.get("")
async def console(directory: DirectoryDep) -> Response:
    totp_rows = [
        pages.TotpRow(
            email=row["loginId"],
            method_id=row["methodId"],
            name=row["name"],
            code=row["code"],
            seconds_left=row["secondsLeft"],
        )
        for row in current_totp_codes(directory)
    ]
    messages = [
        pages.MessageRow(sent_at=m["sent_at"], method=m["method"], to=m["to"], code=m["code"])
        for m in (message.to_json() for message in directory.outbox.messages())
    ]
    users = [
        pages.UserRow(
            id=user.id,
            login=user.login_label,
            active=user.data.get("active", True) is not False,
            refresh_tokens=sum(1 for r in directory.refresh_tokens.values() if r.user_id == user.id),
        )
        for user in directory.users.values()
    ]
    deliveries = [
        pages.DeliveryRow(
            sent_at=datetime.fromtimestamp(d.sent_at, UTC).strftime("%H:%M:%S"),
            type=d.type,
            url=d.url,
            result=str(d.status) if d.status is not None else (d.error or "sending"),
        )
        for d in directory.events.deliveries
    ]
    return pages.html_response(
        pages.console_page(totp_rows=totp_rows, messages=messages, users=users, deliveries=deliveries)
    )


@router.get("/webhooks")
async def webhooks(directory: DirectoryDep) -> Response:
    return JSONResponse([d.to_json() for d in directory.events.deliveries], headers={"Cache-Control": "no-store"})


@router.post("/users/{user_id}/{action}")
async def user_action(user_id: str, action: str, request: Request, directory: DirectoryDep) -> Response:
    # A page on another site could post this form too: only this console's own pages may. Fetch Metadata says so
    # where the browser sends it; Origin otherwise (it is "null" under the pages' no-referrer policy).
    fetch_site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Unauthorized()
    if fetch_site is None and origin not in (None, "null", str(request.base_url).rstrip("/")):
        raise Unauthorized()
    user = directory.users.get(user_id)
    if user is None or action not in ("deactivate", "reactivate", "delete", "revoke"):
        raise NotFound()
    if action == "revoke":
        grants.revoke_refresh_tokens(directory, user_id=user.id)
    elif action == "reactivate":
        user.data["active"] = True
        directory.events.emit(directory, "user.reactivate", tenant_id=user.tenant_id, user=user.to_json())
    else:
        management.deactivate_or_delete(directory, user, hard=action == "delete")
    return RedirectResponse("/_dev", status_code=303)


@router.get("/messages")
async def messages(directory: DirectoryDep) -> Response:
    return JSONResponse(
        [message.to_json() for message in directory.outbox.messages()], headers={"Cache-Control": "no-store"}
    )


@router.get("/totp")
async def totp_codes(directory: DirectoryDep) -> Response:
    return JSONResponse(current_totp_codes(directory), headers={"Cache-Control": "no-store"})
