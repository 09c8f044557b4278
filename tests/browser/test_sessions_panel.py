"""The SPA's "Active sessions" panel in Chromium, against the dev FusionAuth: two devices of one person, one signs the
other out, then everything out; and a session that FusionAuth ends (the /_dev page's "Deactivate") ends in the page."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

from support.dev_stack import RunningStack as Stack

from .conftest import VIEWPORT, sign_in


def _second_device(browser: Browser, stack: Stack) -> Page:
    context = browser.new_context(
        viewport=VIEWPORT,
        base_url=stack.bff_url,
        locale="en-GB",
        user_agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1",
    )
    phone = context.new_page()
    sign_in(phone, stack, "alice@example.com")
    return phone


def test_the_panel_lists_my_sessions_and_signs_one_out_then_everything(
    page: Page, browser: Browser, stack: Stack, screenshot: Callable[[Page, str], Path]
) -> None:
    phone = _second_device(browser, stack)
    sign_in(page, stack, "alice@example.com")
    rows = page.get_by_test_id("session-item")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-current", "true")
    expect(rows.first.get_by_test_id("this-session")).to_have_text("This session")
    expect(rows.nth(1).get_by_test_id("session-agent")).to_have_text("Safari on iOS")
    expect(rows.nth(1)).to_contain_text(re.compile(r"Signed in \d{1,2}:\d\d, last active \d{1,2}:\d\d · 127\.0\.0\.1"))
    page.get_by_test_id("sessions").scroll_into_view_if_needed()
    screenshot(page, "readme-sessions")  # docs/screenshot-sessions.png (tests/browser/conftest.py)

    # Sign the phone out from the laptop: the row goes, and the phone is signed out at its next request.
    rows.nth(1).get_by_role("button", name="Sign out Safari on iOS").click()
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("activity-what").first).to_have_text(
        re.compile(r"^Session signed out from another of your sessions")
    )
    phone.reload()
    expect(phone.get_by_test_id("signed-out")).to_be_visible()

    # The phone signs in again (FusionAuth still knows it: no password asked); then "Sign out everywhere" from the
    # laptop ends both, through FusionAuth's logout.
    phone.get_by_test_id("sign-in").click()
    expect(phone.get_by_test_id("signed-in")).to_be_visible()
    page.reload()
    expect(rows).to_have_count(2)
    page.get_by_test_id("sign-out-everywhere").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page).to_have_url(f"{stack.bff_url}/")
    phone.reload()
    expect(phone.get_by_test_id("signed-out")).to_be_visible()
    phone.context.close()


def test_a_user_deactivated_at_fusionauth_is_signed_out_by_its_webhook(
    page: Page, browser: Browser, stack: Stack
) -> None:
    sign_in(page, stack, "alice@example.com")
    console = browser.new_context(viewport=VIEWPORT, locale="en-GB").new_page()
    console.goto(f"{stack.fusionauth_url}/_dev")
    console.get_by_test_id("deactivate-alice@example.com").click()
    expect(console.get_by_test_id("webhook-log")).to_contain_text("user.deactivate")
    # The BFF ended the session when the signed webhook came: the next request of the page says so.
    page.get_by_test_id("recipient").fill("Bob")
    page.get_by_test_id("message").fill("Hello")
    page.get_by_test_id("send-telegram").click()
    expect(page.get_by_test_id("signed-out")).to_be_visible()
    console.context.close()
