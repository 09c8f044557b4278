"""The SPA's own sign-in form in a real Chromium (native sign-in, which `stepup-bff dev` turns on): labels and
autocomplete, a wrong password announced, and FusionAuth's second factor at sign-in in the shared dialog."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from support.dev_stack import RunningStack as Stack
from support.step_up import UNBOUND

from .conftest import fill_in

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Path]


def test_the_form_a_wrong_password_and_then_signing_in(page: Page, stack: Stack, screenshot: Screenshot) -> None:
    page.goto("/")
    form = page.get_by_test_id("sign-in-form")
    expect(form).to_be_visible()
    login_id = page.get_by_label("Email or username")
    password = page.get_by_label("Password")
    expect(login_id).to_be_focused()
    expect(login_id).to_have_attribute("autocomplete", "username")
    expect(password).to_have_attribute("autocomplete", "current-password")
    expect(password).to_have_attribute("type", "password")
    # The hosted page stays on offer.
    expect(page.get_by_role("button", name="Use FusionAuth's sign-in page")).to_be_visible()
    screenshot(page, "native-sign-in")
    login_id.fill("alice@example.com")
    password.focus()
    # The README shows this state (docs/screenshot-native.png, tests/browser/conftest.py).
    screenshot(page, "readme-native-sign-in")
    login_id.fill("")

    # Nothing typed: said on the page, not sent.
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_test_id("sign-in-error")).to_have_text("Enter your email address or username.")
    expect(login_id).to_be_focused()

    fill_in(page, "dave@example.com", "not-the-password")
    error = page.get_by_test_id("sign-in-error")
    expect(error).to_have_text("That email or username and password don't match. Please try again.")
    expect(error).to_have_attribute("role", "alert")  # announced as it appears
    expect(password).to_have_value("")
    expect(password).to_be_focused()
    expect(login_id).to_have_value("dave@example.com")
    screenshot(page, "native-sign-in-wrong-password")

    password.fill(stack.password)
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("signed-in")).to_be_visible()
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Dave Example")
    # The browser holds the session cookie only: no token in any cookie script could read, nor in storage.
    cookies = page.context.cookies()
    assert [cookie["name"] for cookie in cookies] == ["stepup_session"]
    assert cookies[0]["httpOnly"] is True
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("Object.keys(localStorage).length + Object.keys(sessionStorage).length") == 0


# The time window (send_telegram unbound): the second factor at sign-in covers the telegram that follows.
@pytest.mark.parametrize("stack", [{"resend_cooldown": 4, **UNBOUND}], indirect=True)
def test_a_second_factor_at_sign_in_with_an_authenticator_counts_as_a_step_up(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    stack.login_policy("Enabled")
    page.goto("/")
    fill_in(page, "alice@example.com", stack.password)

    dialog = page.get_by_test_id("sign-in-factor-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("One more step to sign in")
    expect(page.get_by_role("radio", name="Authenticator app")).to_be_checked()
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    expect(code).to_have_attribute("autocomplete", "one-time-code")
    screenshot(page, "native-sign-in-second-factor")

    code.fill("000000" if stack.totp_code("alice@example.com") != "000000" else "111111")
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_test_id("sign-in-factor-error")).to_have_text("That code didn't work. 3 attempts left.")
    code.fill(stack.totp_code("alice@example.com"))
    page.get_by_role("button", name="Verify").click()

    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Alice Example")
    expect(page.get_by_test_id("elevated-badge")).to_have_text(re.compile(r"^No code needed for \d+:\d\d$"))
    # Fresh from the second factor: the privileged action asks for nothing more.
    page.get_by_label("To", exact=True).fill("Grandma")
    page.get_by_label("Message", exact=True).fill("Signed in and sent in one go.")
    page.get_by_role("button", name="Send telegram").click()
    expect(page.get_by_test_id("form-status")).to_have_text("Sent! Your telegram to Grandma is on its way.")
    expect(page.get_by_test_id("step-up-dialog")).to_be_hidden()


def test_a_second_factor_at_sign_in_by_email_and_cancelling_it(page: Page, stack: Stack) -> None:
    stack.login_policy("Enabled")
    page.goto("/")
    fill_in(page, "bob@example.com", stack.password)
    dialog = page.get_by_test_id("sign-in-factor-dialog")
    expect(dialog).to_be_visible()
    expect(page.get_by_test_id("sign-in-factor-methods")).to_contain_text("b•••@example.com")

    # Cancelled: still signed out, and the form says why.
    page.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("You're not signed in yet")
    expect(page.get_by_label("Password")).to_be_focused()
    assert page.request.get("/api/session").json()["authenticated"] is False

    fill_in(page, "bob@example.com", stack.password)
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_test_id("sign-in-factor-sent")).to_have_text("We sent a code to b•••@example.com.")
    page.get_by_label("Verification code").fill(stack.emailed_code("bob@example.com"))
    page.get_by_role("button", name="Verify").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("greeting")).to_have_text("Hello, Bob Example")
