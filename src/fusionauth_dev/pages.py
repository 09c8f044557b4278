"""HTML for the hosted login pages and the dev console. No script at all; every value is escaped."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape

from fastapi.responses import HTMLResponse

NOTICE = "Development server \u2014 not FusionAuth. For local development and tests only."

# Pages carry no script; CSP says so. No form-action: the login form's POST ends in a redirect to the relying
# party, which form-action would block.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2129}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
main.wide{max-width:60rem}
form.inline{display:inline;margin:0 .3rem .2rem 0}form.inline button{width:auto;padding:.25rem .5rem;font-size:.85rem}
.dev-notice{background:#fff3cd;border-bottom:1px solid #e0c36b;padding:.5rem 1rem;text-align:center;font-size:.9rem}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;padding:.5rem;margin-top:.25rem}
button{margin-top:1.25rem;padding:.6rem 1.2rem;font-size:1rem}
.error{color:#a00;background:#fdecec;padding:.5rem;border-radius:4px}
.hint{color:#555;font-size:.9rem}
table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ddd;padding:.35rem .5rem;text-align:left}
code{font-size:1.1rem}
"""


def _page(title: str, body: str, *, wide: bool = False, refresh_seconds: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_seconds}">' if refresh_seconds else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"{refresh}<title>{escape(title)} \u2014 fusionauth_dev</title><style>{_STYLE}</style></head>"
        f'<body><div class="dev-notice" role="note" data-testid="dev-notice">{escape(NOTICE)}</div>'
        f"<main{' class=wide' if wide else ''}><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def html_response(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=_SECURITY_HEADERS)


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">' for name, value in fields.items()
    )


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert" data-testid="error">{escape(message)}</p>' if message else ""


def login_page(
    *, application_name: str, hidden: Mapping[str, str], login_id: str = "", error: str | None = None
) -> str:
    body = (
        f'<p class="hint">Sign in to {escape(application_name)}</p>'
        f"{_error(error)}"
        '<form method="post" action="/oauth2/authorize">'
        f"{_hidden(hidden)}"
        '<label for="loginId">Email</label>'
        f'<input type="text" id="loginId" name="loginId" value="{escape(login_id)}" autocomplete="username" '
        'autocapitalize="none" required autofocus>'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" autocomplete="current-password" required>'
        '<button type="submit">Submit</button>'
        "</form>"
    )
    return _page("Login", body)


@dataclass(frozen=True)
class MethodChoice:
    id: str
    label: str
    can_send: bool


def two_factor_page(
    *, two_factor_id: str, methods: Iterable[MethodChoice], notice: str | None = None, error: str | None = None
) -> str:
    method_list = list(methods)
    listed = "".join(f"<li>{escape(m.label)}</li>" for m in method_list)
    send_forms = "".join(
        '<form method="post" action="/oauth2/two-factor/send">'
        f"{_hidden({'twoFactorId': two_factor_id, 'methodId': m.id})}"
        f'<button type="submit">Send a code to {escape(m.label)}</button></form>'
        for m in method_list
        if m.can_send
    )
    body = (
        f"{_error(error)}"
        f"{f'<p class=hint role=status>{escape(notice)}</p>' if notice else ''}"
        f"<p>Enter the code from one of your methods:</p><ul>{listed}</ul>"
        '<form method="post" action="/oauth2/two-factor">'
        f"{_hidden({'twoFactorId': two_factor_id})}"
        '<label for="code">Verification code</label>'
        '<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus>'
        '<button type="submit">Verify</button></form>'
        f"{send_forms}"
        '<p class="hint">Codes sent by email or SMS appear on the <a href="/_dev">dev console</a>.</p>'
    )
    return _page("Two-factor authentication", body)


def error_page(title: str, message: str) -> str:
    return _page(title, f'<p class="error" role="alert" data-testid="error">{escape(message)}</p>')


@dataclass(frozen=True)
class TotpRow:
    email: str
    method_id: str
    name: str
    code: str
    seconds_left: int


@dataclass(frozen=True)
class MessageRow:
    sent_at: str
    method: str
    to: str
    code: str


@dataclass(frozen=True)
class UserRow:
    id: str
    login: str
    active: bool
    refresh_tokens: int


@dataclass(frozen=True)
class DeliveryRow:
    sent_at: str
    type: str
    url: str
    result: str


def _user_actions(row: UserRow) -> str:
    # Plain forms (no script); the console checks each POST's Origin.
    def button(action: str, label: str) -> str:
        return (
            f'<form method="post" action="/_dev/users/{escape(row.id)}/{action}" class="inline">'
            f'<button type="submit" data-testid="{action}-{escape(row.login)}">{label}</button></form>'
        )

    toggle = button("deactivate", "Deactivate") if row.active else button("reactivate", "Reactivate")
    return toggle + button("revoke", "Revoke refresh tokens") + button("delete", "Delete")


def console_page(
    *,
    totp_rows: Iterable[TotpRow],
    messages: Iterable[MessageRow],
    users: Iterable[UserRow] = (),
    deliveries: Iterable[DeliveryRow] = (),
) -> str:
    totp_html = "".join(
        f"<tr><td>{escape(r.email)}</td><td>{escape(r.name)} ({escape(r.method_id)})</td>"
        f'<td><code data-testid="totp-{escape(r.email)}">{escape(r.code)}</code></td><td>{r.seconds_left}s</td></tr>'
        for r in totp_rows
    )
    message_html = "".join(
        f"<tr><td>{escape(m.sent_at)}</td><td>{escape(m.method)}</td><td>{escape(m.to)}</td>"
        f"<td><code>{escape(m.code)}</code></td></tr>"
        for m in messages
    )
    user_html = "".join(
        f"<tr><td>{escape(u.login)}</td><td>{'active' if u.active else 'deactivated'}</td>"
        f"<td>{u.refresh_tokens}</td><td>{_user_actions(u)}</td></tr>"
        for u in users
    )
    delivery_html = "".join(
        f"<tr><td>{escape(d.sent_at)}</td><td>{escape(d.type)}</td><td>{escape(d.url)}</td><td>{escape(d.result)}</td></tr>"
        for d in deliveries
    )
    body = (
        '<p class="hint">Refreshes every 5 seconds. JSON: <a href="/_dev/messages">/_dev/messages</a>, '
        '<a href="/_dev/totp">/_dev/totp</a>, <a href="/_dev/webhooks">/_dev/webhooks</a>.</p>'
        "<h2>Authenticator (TOTP) codes now</h2>"
        "<table><thead><tr><th>User</th><th>Method</th><th>Code</th><th>Valid for</th></tr></thead>"
        f"<tbody>{totp_html or '<tr><td colspan=4>No user has an authenticator method.</td></tr>'}</tbody></table>"
        "<h2>Sent codes (newest last)</h2>"
        "<table><thead><tr><th>Sent</th><th>Method</th><th>To</th><th>Code</th></tr></thead>"
        f"<tbody>{message_html or '<tr><td colspan=4>Nothing sent yet.</td></tr>'}</tbody></table>"
        '<h2>Users</h2><p class="hint">What an administrator does at FusionAuth; each sends its signed webhook '
        "(user.deactivate, user.delete, jwt.refresh-token.revoke) to the webhooks that take it.</p>"
        "<table><thead><tr><th>User</th><th>State</th><th>Refresh tokens</th><th></th></tr></thead>"
        f"<tbody>{user_html or '<tr><td colspan=4>No users.</td></tr>'}</tbody></table>"
        "<h2>Webhooks sent (newest last)</h2>"
        '<table data-testid="webhook-log"><thead><tr><th>Sent</th><th>Event</th><th>To</th><th>Answer</th></tr></thead>'
        f"<tbody>{delivery_html or '<tr><td colspan=4>Nothing sent yet.</td></tr>'}</tbody></table>"
    )
    return _page("Dev console", body, wide=True, refresh_seconds=5)
