"""The dev console: what a person trying the demo needs instead of a phone and a mailbox.

``GET /_dev`` (HTML, refreshes itself), ``GET /_dev/messages`` (the outbox, newest last), ``GET /_dev/totp`` (the
current code of every authenticator method) and ``GET /_dev/recovery-codes`` (each user's unused recovery codes).
Served only when ``DevSettings.dev_console`` is on.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from fusionauth_dev import pages, totp
from fusionauth_dev.deps import DirectoryDep
from fusionauth_dev.directory import Directory

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


def recovery_code_rows(directory: Directory) -> list[dict[str, Any]]:
    return [
        {"userId": user.id, "loginId": user.login_label, "codes": list(user.recovery_codes)}
        for user in directory.users.values()
        if user.recovery_codes
    ]


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
    recovery = [pages.RecoveryRow(email=row["loginId"], codes=row["codes"]) for row in recovery_code_rows(directory)]
    return pages.html_response(pages.console_page(totp_rows=totp_rows, messages=messages, recovery_rows=recovery))


@router.get("/messages")
async def messages(directory: DirectoryDep) -> Response:
    return JSONResponse(
        [message.to_json() for message in directory.outbox.messages()], headers={"Cache-Control": "no-store"}
    )


@router.get("/totp")
async def totp_codes(directory: DirectoryDep) -> Response:
    return JSONResponse(current_totp_codes(directory), headers={"Cache-Control": "no-store"})


@router.get("/recovery-codes")
async def recovery_codes(directory: DirectoryDep) -> Response:
    return JSONResponse(recovery_code_rows(directory), headers={"Cache-Control": "no-store"})
