"""The single-page app in a real Chromium, against the real BFF and the dev FusionAuth.

What a person does: sign in on the hosted page, send a singing telegram, get challenged (RFC 9470), step up with an
authenticator code or an emailed one, and see the telegram sent exactly once. Screenshots of the main states go to
test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pyotp
import pytest
from playwright.sync_api import Locator, Page, Request, Response, Route, expect

from stepup_bff.activity import ActivityLog
from stepup_bff.clock import SystemClock
from stepup_bff.storage import open_database
from support.dev_stack import RunningStack as Stack
from support.step_up import UNBOUND

from .conftest import sign_in

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Path]


# ---- helpers -------------------------------------------------------------------------------------------------------


@dataclass
class Traffic:
    """The API calls the page made: (method, path, headers) and (method, path, status)."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    responses: list[tuple[str, str, int]] = field(default_factory=list)

    @classmethod
    def watch(cls, page: Page) -> Traffic:
        traffic = cls()
        page.on("request", traffic._request)
        page.on("response", traffic._response)
        return traffic

    def _request(self, request: Request) -> None:
        self.requests.append((request.method, urlsplit(request.url).path, dict(request.headers)))

    def _response(self, response: Response) -> None:
        self.responses.append((response.request.method, urlsplit(response.url).path, response.status))

    def posted(self, path: str) -> list[dict[str, str]]:
        return [headers for method, seen, headers in self.requests if method == "POST" and seen == path]

    def statuses(self, method: str, path: str) -> list[int]:
        return [status for m, seen, status in self.responses if m == method and seen == path]


def dialog(page: Page) -> Locator:
    return page.get_by_test_id("step-up-dialog")


def compose(page: Page, recipient: str, message: str) -> None:
    page.get_by_label("To", exact=True).fill(recipient)
    page.get_by_label("Message", exact=True).fill(message)
    page.get_by_role("button", name="Send telegram").click()


def server_telegrams(page: Page) -> list[dict[str, Any]]:
    """What the BFF has stored for the signed-in user (the page's own cookies)."""
    response = page.request.get("/api/telegrams")
    assert response.ok, response.text()
    telegrams: list[dict[str, Any]] = response.json()["telegrams"]
    return telegrams


def wrong_totp(stack: Stack, login_id: str) -> str:
    """A six-digit code that is not valid for the user's authenticator now (nor a step either side)."""
    secret = stack.stack.seed.user(login_id).totp_secret
    assert secret
    totp = pyotp.TOTP(base64.b32encode(base64.b64decode(secret)).decode())
    now = time.time()
    valid = {totp.at(now + drift) for drift in (-60, -30, 0, 30, 60)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in valid)


def emails_to(stack: Stack, address: str) -> int:
    return sum(1 for message in stack.messages() if message["to"] == address)


def expect_elevated(page: Page, pattern: str = r"^No code needed for \d+:\d\d$") -> None:
    expect(page.get_by_test_id("elevated-badge")).to_have_text(re.compile(pattern))


# ---- signed out ----------------------------------------------------------------------------------------------------


def test_signed_out_page_explains_step_up_and_turns_sign_in_errors_into_sentences(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    page.goto("/?error=login_expired")
    expect(page.get_by_role("heading", name="Singing Telegrams", level=1)).to_be_visible()
    expect(page.get_by_test_id("step-up-explainer")).to_contain_text("confirm it's you with a code")
    expect(page.get_by_role("alert")).to_have_text("The sign-in took too long and timed out. Please try again.")
    # The code is gone from the address bar, so a reload does not show it again.
    expect(page).to_have_url(f"{stack.bff_url}/")
    # `stepup-bff dev` offers native sign-in, so the form comes first; the hosted page's button stays.
    expect(page.get_by_label("Email or username")).to_be_focused()
    expect(page.get_by_test_id("sign-in")).to_have_text("Use FusionAuth's sign-in page")
    screenshot(page, "signed-out-with-error")

    page.goto("/?error=something_new")
    expect(page.get_by_role("alert")).to_have_text("Signing in didn't work. Please try again.")
    page.goto("/?error=fusionauth_unavailable")
    expect(page.get_by_role("alert")).to_contain_text("isn't available right now")

    page.reload()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    screenshot(page, "signed-out")


# ---- stepping up ---------------------------------------------------------------------------------------------------


def test_totp_step_up_confirms_the_telegram_retries_once_with_the_same_key_and_each_telegram_is_confirmed(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    traffic = Traffic.watch(page)
    sign_in(page, stack, "alice@example.com")
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Alice Example")
    expect(page.get_by_test_id("user-email")).to_have_text("alice@example.com")
    expect(page.get_by_test_id("session-ends")).to_contain_text("at")
    expect(page.get_by_test_id("elevated-badge")).to_be_hidden()
    screenshot(page, "signed-in")

    compose(page, "Grandma", "Happy 90th birthday — with love from all of us!")
    expect(dialog(page)).to_be_visible()
    # What is confirmed comes first, in the server's words, before any code is asked for.
    expect(page.get_by_test_id("step-up-confirm")).to_have_text(
        "Confirm: singing telegram to Grandma — “Happy 90th birthday — with love from…”"
    )
    expect(dialog(page)).to_contain_text("The code you enter confirms this, and nothing else:")
    authenticator = page.get_by_role("radio", name="Authenticator app")
    expect(authenticator).to_be_checked()
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    expect(code).to_have_attribute("inputmode", "numeric")
    expect(code).to_have_attribute("pattern", "[0-9]*")
    expect(page.get_by_test_id("step-up-send")).to_be_hidden()  # nothing to send for an authenticator
    screenshot(page, "step-up-authenticator")

    code.fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("form-status")).to_have_text("Sent! Your telegram to Grandma is on its way.")
    expect(page.get_by_test_id("telegram")).to_have_count(1)
    first = page.get_by_test_id("telegram").first
    expect(first.get_by_test_id("telegram-recipient")).to_have_text("Grandma")
    expect(first.get_by_test_id("telegram-message")).to_have_text("Happy 90th birthday — with love from all of us!")
    expect(first.get_by_test_id("telegram-status")).to_have_text("Queued")
    expect(page.get_by_label("To", exact=True)).to_have_value("")
    expect(page.get_by_label("Message", exact=True)).to_have_value("")
    # A confirmation of one telegram elevates nothing else: no badge.
    expect(page.get_by_test_id("elevated-badge")).to_be_hidden()

    # The challenge, then exactly one retry carrying the very same Idempotency-Key.
    assert traffic.statuses("POST", "/api/telegrams") == [401, 201]
    keys = [headers.get("idempotency-key") for headers in traffic.posted("/api/telegrams")]
    assert keys[0] and keys[0] == keys[1]
    for headers in traffic.posted("/api/telegrams"):
        assert headers.get("x-csrf") == "1"
        assert headers.get("content-type") == "application/json"

    # The next telegram is confirmed for what it is.
    compose(page, "Uncle Bob", "Congratulations on the new boat!")
    expect(page.get_by_test_id("step-up-confirm")).to_have_text(
        "Confirm: singing telegram to Uncle Bob — “Congratulations on the new boat!”"
    )
    screenshot(page, "readme-step-up-dialog")  # docs/screenshot.png (tests/browser/conftest.py)
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("form-status")).to_contain_text("Uncle Bob")
    expect(page.get_by_test_id("telegram")).to_have_count(2)
    expect(page.get_by_test_id("telegram-recipient").first).to_have_text("Uncle Bob")
    assert traffic.statuses("POST", "/api/telegrams") == [401, 201, 401, 201]
    assert traffic.posted("/api/telegrams")[2]["idempotency-key"] != keys[0]
    assert [t["recipient"] for t in server_telegrams(page)] == ["Uncle Bob", "Grandma"]

    # The Activity panel says what happened, in plain words, newest first.
    items = page.get_by_test_id("activity-what")
    clock = r", \d{1,2}:\d\d( [AP]M)?$"
    expect(items.nth(0)).to_have_text(re.compile(r"^Singing telegram sent from Chrome on Linux" + clock))
    expect(items.nth(1)).to_have_text(
        re.compile(r"^Confirmed it's you with your authenticator app from Chrome on Linux" + clock)
    )
    expect(items.nth(2)).to_have_text(re.compile(r"^Asked to confirm a singing telegram from Chrome on Linux" + clock))
    expect(items.last).to_have_text(re.compile(r"^Signed in on FusionAuth's page from Chrome on Linux" + clock))
    expect(items).to_have_count(7)
    page.get_by_test_id("activity").scroll_into_view_if_needed()
    screenshot(page, "activity")

    # A reload shows the same state from the server.
    page.reload()
    expect(page.get_by_test_id("telegram")).to_have_count(2)
    expect(page.get_by_test_id("activity-item")).to_have_count(7)
    expect(page.get_by_test_id("elevated-badge")).to_be_hidden()


def test_emailed_code_with_a_wrong_code_first_and_the_resend_cooldown(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    sign_in(page, stack, "bob@example.com")
    compose(page, "Alice", "Thanks for the tea.")
    expect(dialog(page)).to_be_visible()
    email = page.get_by_role("radio", name=re.compile("Email"))
    expect(email).to_be_checked()
    expect(page.get_by_test_id("step-up-methods")).to_contain_text("b•••@example.com")
    expect(page.get_by_label("Verification code")).to_be_hidden()  # not before a code was sent

    send = page.get_by_test_id("step-up-send")
    expect(send).to_have_text("Send code")
    expect(send).to_be_focused()
    send.click()
    expect(page.get_by_test_id("step-up-sent")).to_have_text("We sent a code to b•••@example.com.")
    # Announced once, with the wait: the countdown itself is in no live region.
    expect(page.get_by_test_id("step-up-announcer")).to_have_text(
        "We sent a code to b•••@example.com. You can ask for a new one in 4 seconds."
    )
    expect(page.get_by_label("Verification code")).to_be_focused()
    # The cooldown (4 s in this stack) counts down in text beside the button, which waits without losing its place
    # in the Tab order (aria-disabled), then lets a resend through.
    wait = page.get_by_test_id("step-up-resend-wait")
    expect(send).to_have_attribute("aria-disabled", "true")
    assert send.evaluate("button => !button.disabled")  # still in the Tab order
    expect(wait).to_have_text(re.compile(r"^You can ask for a new code in [1-4] s\.$"))
    screenshot(page, "step-up-email-sent")
    first_wait = wait.text_content()
    expect(wait).not_to_have_text(first_wait or "")  # it ticks
    assert emails_to(stack, "bob@example.com") == 1

    first_code = stack.emailed_code("bob@example.com")
    wrong = next(code for code in ("000000", "111111", "222222") if code != first_code)
    page.get_by_label("Verification code").fill(wrong)
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("step-up-error")).to_have_text("That code didn't work. 3 attempts left.")
    expect(page.get_by_label("Verification code")).to_be_focused()
    screenshot(page, "step-up-wrong-code")

    expect(send).to_have_attribute("aria-disabled", "false", timeout=8_000)
    expect(wait).to_be_hidden()
    expect(send).to_have_text("Send a new code")
    send.click()
    expect(send).to_have_attribute("aria-disabled", "true")
    assert_eventually(lambda: emails_to(stack, "bob@example.com") == 2)
    # Each send replaces the previous code.
    # The email says what the code confirms (kickstart/email-mfa.json's template, the summary escaped in HTML).
    [last] = [message for message in stack.messages() if message["to"] == "bob@example.com"][-1:]
    assert last["text"].startswith("You are confirming: singing telegram to Alice — “Thanks for the tea.”\n")
    assert last["subject"] == "Confirm: singing telegram to Alice — “Thanks for the tea.”"
    page.get_by_label("Verification code").fill(stack.emailed_code("bob@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram-recipient")).to_have_text(["Alice"])
    assert len(server_telegrams(page)) == 1
    expect(page.get_by_test_id("activity-what").nth(1)).to_contain_text("Confirmed it's you with an emailed code")
    expect(
        page.get_by_test_id("activity").get_by_text(re.compile(r"^A code didn't work \(3 tries left\)"))
    ).to_be_visible()


def test_cancel_closes_the_dialog_keeps_the_text_and_sends_nothing(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    traffic = Traffic.watch(page)
    sign_in(page, stack, "alice@example.com")
    compose(page, "The whole office", "Happy Friday, everyone!")
    expect(dialog(page)).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_label("To", exact=True)).to_have_value("The whole office")
    expect(page.get_by_label("Message", exact=True)).to_have_value("Happy Friday, everyone!")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "Not sent, because confirming was cancelled. Your telegram is still here. Send it again when you're ready."
    )
    # Focus is back where the person was.
    expect(page.get_by_role("button", name="Send telegram")).to_be_focused()
    screenshot(page, "cancelled")

    # Escape cancels too.
    page.get_by_role("button", name="Send telegram").click()
    expect(dialog(page)).to_be_visible()
    expect(page.get_by_label("Verification code")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_have_value("Happy Friday, everyone!")
    expect(page.get_by_role("button", name="Send telegram")).to_be_focused()

    assert server_telegrams(page) == []
    expect(page.get_by_test_id("telegrams-empty")).to_be_visible()
    assert traffic.statuses("POST", "/api/telegrams") == [401, 401]  # never retried without a step-up
    assert_eventually(lambda: traffic.statuses("POST", "/api/step-up/cancel") == [204, 204])


@pytest.mark.parametrize("stack", [{"max_age": 8, **UNBOUND}], indirect=True)
def test_the_elevated_window_runs_out_and_the_next_send_prompts_again(page: Page, stack: Stack) -> None:
    sign_in(page, stack, "alice@example.com")
    compose(page, "Dad", "See you on Sunday.")
    expect(dialog(page)).to_contain_text("in the last 8 seconds")
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram")).to_have_count(1)
    expect_elevated(page, r"^No code needed for 0:0[1-8]$")

    # The badge counts down and disappears at expiry (after asking /api/session what is true now).
    expect(page.get_by_test_id("elevated-badge")).to_be_hidden(timeout=12_000)
    # The BFF states expires_at in whole seconds, rounded down, so the badge may go up to a second before the
    # server stops honouring the step-up; only then is the next send sure to be challenged.
    assert_eventually(lambda: page.request.get("/api/session").json()["step_up"]["active"] is False, timeout=3)
    compose(page, "Mum", "See you on Sunday too.")
    expect(dialog(page)).to_be_visible()
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram-recipient")).to_have_text(["Mum", "Dad"])


@pytest.mark.parametrize("stack", [{"single_use": True, **UNBOUND}], indirect=True)
def test_single_use_step_up_prompts_for_every_telegram_and_methods_can_be_switched(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    sign_in(page, stack, "carol@example.com")
    compose(page, "Bob", "Break a leg tonight!")
    expect(dialog(page)).to_be_visible()
    expect(page.get_by_role("radio")).to_have_count(2)
    page.get_by_role("radio", name="Authenticator app").check()
    page.get_by_label("Verification code").fill(stack.totp_code("carol@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram")).to_have_count(1)
    # The one step-up was used up by that telegram, so no badge (the page re-read /api/session).
    expect(page.get_by_test_id("elevated-badge")).to_be_hidden()

    compose(page, "Dave", "Welcome to the team! We're so glad you're here.")
    expect(dialog(page)).to_be_visible()
    expect(page.get_by_label("Verification code")).to_be_focused()
    screenshot(page, "step-up-single-use")

    # Switch to email: the code field waits for a sent code.
    page.get_by_role("radio", name=re.compile("Email")).check()
    expect(page.get_by_label("Verification code")).to_be_hidden()
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_test_id("step-up-sent")).to_have_text("We sent a code to c•••@example.com.")
    page.get_by_label("Verification code").fill(stack.emailed_code("carol@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram-recipient")).to_have_text(["Dave", "Bob"])
    assert len(server_telegrams(page)) == 2


@pytest.mark.parametrize("stack", [{"max_attempts": 2, "max_failures": 3}], indirect=True)
def test_too_many_wrong_codes_restart_the_challenge_and_then_block_with_a_countdown(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    sign_in(page, stack, "alice@example.com")
    compose(page, "Eve", "Nothing to see here.")
    code = page.get_by_label("Verification code")
    verify = page.get_by_role("button", name="Verify")
    error = page.get_by_test_id("step-up-error")

    code.fill(wrong_totp(stack, "alice@example.com"))
    verify.click()
    expect(error).to_have_text("That code didn't work. 1 attempt left.")
    code.fill(wrong_totp(stack, "alice@example.com"))
    verify.click()
    expect(error).to_have_text(
        "That code didn't work, and that was the last try for this code. Start again for a new one."
    )
    expect(code).to_be_hidden()
    restart = page.get_by_role("button", name="Start again")
    expect(restart).to_be_focused()
    screenshot(page, "step-up-start-again")

    restart.click()
    expect(code).to_be_focused()
    expect(error).to_be_hidden()
    code.fill(wrong_totp(stack, "alice@example.com"))
    verify.click()
    # The third wrong code in the failure window blocks step-up for this user: said once, with when it ends; the
    # wait counts down beside it, outside any live region.
    expect(error).to_have_text(
        re.compile(
            r"^Several codes in a row didn't work, so confirming is paused for your safety\. "
            r"You can try again (tomorrow )?at \d{1,2}:\d\d \(in 1[45] min( \d+ s)?\)\.$"
        )
    )
    wait = page.get_by_test_id("step-up-wait")
    expect(wait).to_have_text(re.compile(r"^You can try again in 1[45] min( \d+ s)?\.$"))
    first = wait.text_content()
    expect(wait).not_to_have_text(first or "")
    expect(verify).to_be_hidden()
    screenshot(page, "step-up-blocked")

    page.get_by_role("button", name="Cancel").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_label("Message", exact=True)).to_have_value("Nothing to see here.")
    # Not "you didn't confirm": the page says what happened, and until when.
    expect(page.get_by_test_id("form-error")).to_have_text(
        re.compile(r"^Not sent\. Several codes in a row didn't work, .* Your telegram is still here\.$")
    )

    # A new attempt is refused at once, with the same wait.
    page.get_by_role("button", name="Send telegram").click()
    expect(wait).to_have_text(re.compile(r"^You can try again in 1[45] min( \d+ s)?\.$"))
    assert server_telegrams(page) == []


@pytest.mark.parametrize("stack", [{"challenge_ttl": 2}], indirect=True)
def test_an_expired_challenge_offers_to_start_again_and_the_telegram_still_goes_once(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    traffic = Traffic.watch(page)
    sign_in(page, stack, "alice@example.com")
    compose(page, "Aunt May", "Thinking of you.")
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    time.sleep(2.5)  # the challenge lives 2 s in this stack
    code.fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("step-up-error")).to_have_text(
        "Time ran out for this code. Start again to get a new one."
    )
    screenshot(page, "step-up-expired")

    page.get_by_role("button", name="Start again").click()
    expect(code).to_be_focused()
    code.fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram-recipient")).to_have_text(["Aunt May"])
    assert traffic.statuses("POST", "/api/telegrams") == [401, 201]
    assert len(server_telegrams(page)) == 1


def test_a_user_without_a_way_to_confirm_is_told_so_plainly_and_offered_to_set_one_up(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    """Issue 17, point 9: dave has no second factor. The dialog says what is missing in plain words (no "second
    factor", no "set one up in FusionAuth first") and offers the way out right here (tests/browser/test_factors.py
    walks through it); closed instead, the page does not say "you didn't confirm it's you": he could not have."""
    sign_in(page, stack, "dave@example.com")
    compose(page, "Carol", "Welcome aboard!")
    expect(dialog(page)).to_be_visible()
    message = page.get_by_test_id("step-up-error")
    expect(message).to_have_text(
        "Your account doesn't have a way to confirm it's you yet, such as an authenticator app. Set one up now: it "
        "takes a minute, and then this goes ahead where you left off."
    )
    expect(dialog(page)).not_to_contain_text("second factor")
    expect(dialog(page)).not_to_contain_text("FusionAuth")
    expect(page.get_by_role("radio")).to_have_count(0)
    expect(page.get_by_role("button", name="Verify")).to_be_hidden()
    expect(page.get_by_role("button", name="Use a recovery code")).to_be_hidden()  # none without a method
    # The way out has focus; it exists in this view only.
    expect(page.get_by_role("button", name="Set up an authenticator app")).to_be_focused()
    close = page.get_by_role("button", name="Close")
    screenshot(page, "step-up-no-second-factor")
    close.click()
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_label("To", exact=True)).to_have_value("Carol")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "Not sent yet: your account needs a way to confirm it's you first. Your telegram is still here."
    )
    expect(page.get_by_role("button", name="Send telegram")).to_be_focused()
    assert server_telegrams(page) == []


# ---- failures and the session --------------------------------------------------------------------------------------


def test_a_network_failure_says_so_and_keeps_the_text(page: Page, stack: Stack, screenshot: Screenshot) -> None:
    sign_in(page, stack, "alice@example.com")

    def offline(route: Route) -> None:
        if route.request.method == "POST":
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/api/telegrams", offline)
    compose(page, "Grandpa", "The garden looks lovely.")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "Can't reach the server. Check your connection and try again."
    )
    expect(page.get_by_label("To", exact=True)).to_have_value("Grandpa")
    expect(page.get_by_label("Message", exact=True)).to_have_value("The garden looks lovely.")
    expect(page.get_by_role("button", name="Send telegram")).to_have_text("Send telegram")
    expect(dialog(page)).to_be_hidden()
    screenshot(page, "network-error")


def test_sign_out_then_sign_in_again_and_an_ended_session_shows_the_signed_out_view(page: Page, stack: Stack) -> None:
    sign_in(page, stack, "alice@example.com")
    page.get_by_role("button", name="Sign out", exact=True).click()
    # Through FusionAuth's logout and back to the app's front page.
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page).to_have_url(f"{stack.bff_url}/")
    assert page.request.get("/api/session").json()["authenticated"] is False

    # FusionAuth's SSO session ended too: signing in asks for the password again.
    sign_in(page, stack, "alice@example.com")
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Alice Example")

    # The session disappears behind the page's back (cookie gone): the next request shows the signed-out view.
    page.context.clear_cookies()
    compose(page, "Anyone", "Hello?")
    expect(page.get_by_test_id("signed-out")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_text("Your session has ended. Please sign in again.")


def assert_eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---- the activity log and several confirmations at once ------------------------------------------------------------


def seed_second_factor_events(stack: Stack, login_id: str, count: int) -> None:
    """Events as the enrolment feature to come will write them (ActivityLog's API), into the stack's database, from a
    thread of its own (Playwright's sync API holds this thread's event loop)."""
    user_id = stack.stack.seed.user(login_id).id

    async def seed() -> None:
        async with open_database(stack.stack.settings.database) as database:
            log = ActivityLog(database, SystemClock())
            for _ in range(count):
                await log.second_factor_added(user_id, "authenticator")

    worker = threading.Thread(target=lambda: anyio.run(seed))
    worker.start()
    worker.join(timeout=30)


def test_the_activity_panel_shows_older_events_on_request(page: Page, stack: Stack) -> None:
    sign_in(page, stack, "alice@example.com")
    seed_second_factor_events(stack, "alice@example.com", 24)
    page.reload()
    items = page.get_by_test_id("activity-what")
    expect(items).to_have_count(20)  # a page
    # Written outside a request, so no browser to name: just what happened, and when.
    expect(items.first).to_have_text(re.compile(r"^Authenticator app added as a way to confirm it's you, \d{1,2}:\d\d"))
    more = page.get_by_role("button", name="Show older activity")
    more.click()
    expect(items).to_have_count(25)
    expect(items.last).to_have_text(re.compile(r"^Signed in on FusionAuth's page from Chrome on Linux, \d{1,2}:\d\d"))
    expect(more).to_be_hidden()


def test_two_telegrams_challenged_at_once_are_each_confirmed_for_what_they_are(page: Page, stack: Stack) -> None:
    """api.js: requests challenged for different transactions do not share a dialog (one confirmation is for one
    request); each gets its own, one after the other, and both are sent."""
    sign_in(page, stack, "alice@example.com")
    page.evaluate(
        """async () => {
          const { api } = await import("/api.js");
          window.bothSent = Promise.all([
            api.sendTelegram({ recipient: "Ann", message: "One" }, "k-ann"),
            api.sendTelegram({ recipient: "Ben", message: "Two" }, "k-ben"),
          ]).then((sent) => sent.map((telegram) => telegram.recipient));
        }"""
    )
    confirms = page.get_by_test_id("step-up-confirm")
    seen = []
    for turn in range(2):
        expect(confirms).to_have_text(re.compile(r"^Confirm: singing telegram to (Ann — “One”|Ben — “Two”)$"))
        text = confirms.text_content() or ""
        assert text not in seen
        seen.append(text)
        page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
        page.get_by_role("button", name="Verify").click()
        if turn == 0:
            expect(confirms).not_to_have_text(text)  # the next dialog, for the other telegram
    expect(dialog(page)).to_be_hidden()
    assert sorted(page.evaluate("() => window.bothSent")) == ["Ann", "Ben"]
    assert sorted(t["recipient"] for t in server_telegrams(page)) == ["Ann", "Ben"]
