"""The SPA for everyone (issue 17), in Debian's Chromium against the real BFF and the dev FusionAuth: the keyboard
alone, low vision (forced colours, a larger browser font, dark mode), a 320 px window, screen readers (focus, live
regions, errors tied to their field), plain words, and an axe-core pass over the main states.

One test (or a few) per point of the issue, named after what a person gets. axe-core comes from npm
(tests/browser/node, installed by .ci/run); it is injected with the page's CSP bypassed in that test's own browser
context only, since the CSP forbids the inline script that injection is.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyotp
import pytest
from playwright.sync_api import Browser, Locator, Page, Route, expect

from support.dev_stack import RunningStack as Stack
from support.step_up import UNBOUND

from .conftest import ROOT, VIEWPORT, fill_in, sign_in, sign_in_natively, watched_page
from .test_factors import enrolment, scanned, type_code, wrong_code
from .test_spa import Traffic, compose, dialog, wrong_totp

pytestmark = pytest.mark.browser

Screenshot = Callable[[Page, str], Path]
AXE = ROOT / "tests" / "browser" / "node" / "node_modules" / "axe-core" / "axe.min.js"
# WCAG 2.0-2.2 A and AA, and axe's best practices (landmarks, one h1, headings in order, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
# Words the issue found meaning little to most people; none may be on screen in any state.
JARGON = re.compile(r"second factor|challenge|elevated|sign-in service|privileged", re.IGNORECASE)
LIVE = "[aria-live], [role=alert], [role=status], [role=log], [role=timer], [role=marquee]"


# ---- helpers -------------------------------------------------------------------------------------------------------


def luminance(rgb: tuple[float, float, float]) -> float:
    def channel(value: float) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = rgb
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def parse_colour(css: str) -> tuple[float, float, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", css)[:3]]
    assert len(numbers) == 3, css
    return numbers[0], numbers[1], numbers[2]


def contrast(first: str, second: str) -> float:
    a, b = luminance(parse_colour(first)), luminance(parse_colour(second))
    return (max(a, b) + 0.05) / (min(a, b) + 0.05)


def colour_of(page: Page, variable: str) -> str:
    """A theme colour as the browser computes it (a custom property resolved through a throwaway element)."""
    value: str = page.evaluate(
        """(name) => {
          const probe = document.createElement("span");
          probe.style.setProperty("color", `var(${name})`);  // CSSOM, not an attribute: the CSP allows it
          document.body.append(probe);
          const colour = getComputedStyle(probe).color;
          probe.remove();
          return colour;
        }""",
        variable,
    )
    return value


def focus_ring(locator: Locator) -> dict[str, str]:
    ring: dict[str, str] = locator.evaluate(
        """(element) => {
          const style = getComputedStyle(element);
          return {
            style: style.outlineStyle, width: style.outlineWidth, colour: style.outlineColor,
            offset: style.outlineOffset, visible: String(element.matches(":focus-visible")),
          };
        }"""
    )
    return ring


def watch_focus(page: Page) -> None:
    """Record, in the page, where focus is on every frame while a dialog is open (browser-side, so nothing in the
    test's own timing can miss a moment on <body>)."""
    page.evaluate(
        """() => {
          window.focusTrail = [];
          const where = () => {
            const element = document.activeElement;
            if (document.querySelector("dialog[open]")) {
              const inside = element && element.closest("dialog[open]");
              window.focusTrail.push(
                element === document.body || !element ? "body"
                  : inside ? (element.id || element.dataset.testid || element.tagName) : "outside:" + element.tagName
              );
            }
            requestAnimationFrame(where);
          };
          requestAnimationFrame(where);
        }"""
    )


def focus_trail(page: Page) -> list[str]:
    trail: list[str] = page.evaluate("() => window.focusTrail")
    return trail


def watch_live_regions(page: Page) -> None:
    """Count every change inside a live region from now on (what a screen reader would read out)."""
    page.evaluate(
        """(selector) => {
          window.liveChanges = [];
          new MutationObserver((records) => {
            for (const record of records) {
              const target = record.target;
              const node = target.nodeType === Node.ELEMENT_NODE ? target : target.parentElement;
              const region = node && node.closest(selector);
              const name = region && (region.dataset.testid || region.id || "?");
              if (region) window.liveChanges.push(`${name}: ${region.textContent}`);
            }
          }).observe(document.body, { subtree: true, childList: true, characterData: true });
        }""",
        LIVE,
    )


def live_changes(page: Page) -> list[str]:
    changes: list[str] = page.evaluate("() => window.liveChanges")
    return changes


def a_first_authenticator(stack: Stack, login_id: str) -> tuple[pyotp.TOTP, list[str]]:
    """What setting up a first authenticator app leaves a person with: the app, and the ten recovery codes FusionAuth
    shows that once (docs/fusionauth.md §8). Through the Enable API with the admin key, as an operator could: the
    Security panel's own way is tests/browser/test_factors.py's."""
    user_id = stack.stack.seed.user(login_id).id
    secret = stack.admin("GET", "/api/two-factor/secret").json()
    app = pyotp.TOTP(secret["secretBase32Encoded"])
    body = {"method": "authenticator", "secret": secret["secret"], "code": app.now()}
    enabled = stack.admin("POST", f"/api/user/two-factor/{user_id}", body)
    assert enabled.status_code == 200, enabled.text
    return app, list(enabled.json()["recoveryCodes"])


def answer(route: Route, status: int, body: dict[str, Any]) -> None:
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def answering(status: int, body: dict[str, Any]) -> Callable[[Route], None]:
    return lambda route: answer(route, status, body)


def no_horizontal_scroll(page: Page) -> None:
    width = page.viewport_size["width"] if page.viewport_size else 0
    scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
    assert scroll_width <= width, f"the page is {scroll_width} px wide in a {width} px window"


def fully_inside_the_window(locator: Locator, page: Page) -> None:
    box = locator.bounding_box()
    width = page.viewport_size["width"] if page.viewport_size else 0
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= width, f"{box} is cut off at {width} px"


def enter_and_see_it_sent(page: Page, code: Locator, value: str, recipients: list[str]) -> None:
    """Type `value` into the dialog's code field, press Enter: the dialog closes and the telegram is listed."""
    code.fill(value)
    page.keyboard.press("Enter")
    expect(dialog(page)).to_be_hidden()
    expect(page.get_by_test_id("telegram-recipient")).to_have_text(recipients)


def no_jargon(page: Page) -> None:
    text = page.locator("body").inner_text()
    found = JARGON.findall(text)
    assert not found, f"{found} on screen: {text!r}"


# ---- 1. a focus indicator everyone sees ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["light", "dark", "forced-colors"])
def test_the_focus_ring_is_a_solid_outline_that_survives_forced_colours(page: Page, stack: Stack, mode: str) -> None:
    """WCAG 2.4.7 and 1.4.11: a 3 px solid outline, offset from the control, at least 3:1 against what is around it;
    in forced colours (Windows high contrast) the system's Highlight colour, where a box-shadow would vanish."""
    if mode == "forced-colors":
        page.emulate_media(forced_colors="active")
    else:
        page.emulate_media(color_scheme=mode)  # type: ignore[arg-type]
    page.goto("/")
    login_id = page.get_by_label("Email or username")
    expect(login_id).to_be_focused()
    assert page.evaluate("() => matchMedia('(forced-colors: active)').matches") is (mode == "forced-colors")

    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Sign in", exact=True)
    expect(button).to_be_focused()
    for control in (button, login_id):
        control.focus()
        ring = focus_ring(control)
        assert ring["style"] == "solid", ring
        assert float(ring["width"].removesuffix("px")) >= 2, ring
        assert ring["visible"] == "true"
        if mode != "forced-colors":
            for background in ("--bg", "--surface"):
                assert contrast(ring["colour"], colour_of(page, background)) >= 3, (ring, background)
    # Seen, not only computed: the control looks different with focus than without, in every mode.
    button.focus()
    area = button.bounding_box()
    assert area is not None
    clip = {"x": area["x"] - 8, "y": area["y"] - 8, "width": area["width"] + 16, "height": area["height"] + 16}
    focused = page.screenshot(clip=clip, animations="disabled")
    page.get_by_role("heading", name="Singing Telegrams").click()  # a click on text takes focus off the button
    expect(button).not_to_be_focused()
    assert page.screenshot(clip=clip, animations="disabled") != focused


# ---- 2. reflow at 320 px -------------------------------------------------------------------------------------------


def test_nothing_scrolls_sideways_at_320_px(page: Page, stack: Stack, screenshot: Screenshot) -> None:
    """WCAG 1.4.10: 320 CSS px (a 1280 px window at 400 %), signed out, signed in and with the dialog open."""
    page.set_viewport_size({"width": 320, "height": 640})
    page.goto("/")
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    no_horizontal_scroll(page)
    fully_inside_the_window(page.get_by_role("button", name="Use FusionAuth's sign-in page"), page)
    screenshot(page, "reflow-320-signed-out")

    sign_in_natively(page, stack, "alice@example.com")
    # The sign-in button that had focus is gone: the greeting takes it (never <body>), at the top of the page.
    greeting = page.get_by_role("heading", name="Hello, Alice Example")
    expect(greeting).to_be_focused()
    expect(greeting).to_be_in_viewport()
    no_horizontal_scroll(page)
    fully_inside_the_window(page.get_by_role("button", name="Sign out", exact=True), page)
    fully_inside_the_window(page.get_by_role("button", name="Send telegram"), page)
    screenshot(page, "reflow-320-signed-in")

    compose(page, "Someone with a rather long name indeed", "A message that goes on for a while, as they do.")
    expect(page.get_by_label("Verification code")).to_be_focused()
    no_horizontal_scroll(page)
    for name in ("Verify", "Cancel", "Use a recovery code"):
        fully_inside_the_window(page.get_by_role("button", name=name), page)
    fully_inside_the_window(page.get_by_test_id("step-up-confirm"), page)
    screenshot(page, "reflow-320-dialog")


# ---- 3. focus never falls to <body> ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("login_id", "start", "heading", "prefix"),
    [
        ("alice@example.com", "**/api/step-up/start", "Confirm it's you", "step-up"),
        ("dave@example.com", "**/api/factors/authenticator/start", "Set up an authenticator app", "enrol"),
    ],
    ids=["step-up", "set-up"],
)
def test_focus_is_inside_the_dialog_from_the_first_frame_even_while_a_slow_start_loads(
    page: Page, stack: Stack, login_id: str, start: str, heading: str, prefix: str
) -> None:
    """WCAG 2.4.3: the dialog is rendered in its loading state before it is shown (its code and password fields,
    hidden then, never take focus), and its heading holds focus while the start takes its time (here 1.5 s); then
    the code field has it. The step-up dialog, and the one that sets up an authenticator app. The page's clock is
    Playwright's: the 1.5 s pass at once, every timer and animation frame in them run, none waited for."""
    page.clock.install()
    held: list[Route] = []
    page.route(start, lambda route: held.append(route))
    sign_in_natively(page, stack, login_id)
    watch_focus(page)
    if prefix == "step-up":
        compose(page, "Grandma", "Happy birthday!")
    else:
        page.get_by_role("button", name="Add an authenticator app").click()
    expect(page.get_by_test_id(f"{prefix}-loading")).to_be_visible()
    title = page.get_by_role("heading", name=heading)
    expect(title).to_be_focused()
    page.clock.run_for(1_500)  # the start is slow: every frame meanwhile (watch_focus) has focus on the heading
    assert set(focus_trail(page)) == {f"{prefix}-title"} and len(focus_trail(page)) > 10, focus_trail(page)
    expect(title).to_be_focused()
    held[0].continue_()
    expect(page.get_by_test_id(f"{prefix}-code")).to_be_focused()
    trail = focus_trail(page)
    assert trail[0] == f"{prefix}-title" and "body" not in trail, trail
    assert {f"{prefix}-title", f"{prefix}-code"} >= set(trail), trail


@pytest.mark.parametrize("stack", [{"resend_cooldown": 10}], indirect=True)
def test_focus_stays_on_a_send_button_that_waits_and_it_says_why(page: Page, stack: Stack) -> None:
    """A button that cannot act right now (sending, or the resend wait) is aria-disabled, not disabled: it keeps
    focus and its place in the Tab order, and pressing it says what it waits for."""
    page.clock.install()
    held: list[Route] = []
    sign_in(page, stack, "bob@example.com")
    watch_focus(page)
    compose(page, "Alice", "Thanks for the tea.")
    send = page.get_by_role("button", name="Send code")
    expect(send).to_be_focused()
    page.route("**/api/step-up/send", lambda route: held.append(route))
    page.keyboard.press("Enter")
    expect(send).to_have_attribute("aria-disabled", "true")
    page.clock.run_for(300)  # the send is on its way (300 ms of the page's timers and frames): focus has not moved
    expect(send).to_be_focused()
    held[0].continue_()
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    # Back to the button, now waiting out the cooldown: still reachable by keyboard, and it says why on Enter.
    page.keyboard.press("Shift+Tab")
    resend = page.get_by_role("button", name="Send a new code")
    expect(resend).to_be_focused()
    expect(resend).to_have_attribute("aria-disabled", "true")
    expect(resend).to_have_accessible_description(re.compile(r"^You can ask for a new code in \d+ s\.$"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text(
        re.compile(r"^You can ask for a new code in \d+ seconds?\.$")
    )
    expect(resend).to_be_focused()
    assert "body" not in focus_trail(page), focus_trail(page)


# ---- 4. a temporary lock says until when, and the dialog comes back by itself ----------------------------------------


def test_fusionauths_lockout_is_a_pause_with_an_end_and_the_dialog_comes_back_by_itself(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    """The kickstart tenant locks an account for 3 minutes after 5 failed attempts in 60 s. The BFF asks to start
    again after 4 (step_up.max_attempts), so its "start again" comes first; the 5th wrong code makes FusionAuth lock
    the account, and its 409 (with the action's expiry) is a temporary lock: "try again at HH:MM", then the dialog
    offers to go on by itself, with no "contact support"."""
    page.clock.install()
    sign_in(page, stack, "alice@example.com")
    compose(page, "Eve", "Let me in.")
    code = page.get_by_label("Verification code")
    error = page.get_by_test_id("step-up-error")
    for left in (3, 2, 1):
        code.fill(wrong_totp(stack, "alice@example.com"))
        page.keyboard.press("Enter")
        expect(error).to_have_text(f"That code didn't work. {left} attempt{'s' if left > 1 else ''} left.")
    code.fill(wrong_totp(stack, "alice@example.com"))
    page.keyboard.press("Enter")
    # Ours first: the BFF's limit is below the tenant's.
    expect(error).to_contain_text("that was the last try for this code")
    page.get_by_role("button", name="Start again").click()
    code.fill(wrong_totp(stack, "alice@example.com"))
    page.keyboard.press("Enter")
    expect(error).to_have_text("That code didn't work. 3 attempts left.")  # the 5th: FusionAuth locks from now on

    with page.expect_response("**/api/step-up/finish") as locked:
        code.fill(stack.totp_code("alice@example.com"))
        page.keyboard.press("Enter")
    body = locked.value.json()
    assert (locked.value.status, body["error"]) == (429, "temporarily_locked")
    zone = ZoneInfo(page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone"))
    until = datetime.fromisoformat(body["locked_until"]).astimezone(zone)
    expect(error).to_have_text(
        re.compile(
            r"^Your account is locked\. You can try again "
            rf"(tomorrow )?at 0?{until.hour}:{until.minute:02d} \(in (3 min|2 min \d+ s)\)\.$"
        )
    )
    expect(dialog(page)).not_to_contain_text("support")
    expect(code).to_be_hidden()
    expect(page.get_by_role("button", name="Try again")).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    screenshot(page, "step-up-temporarily-locked")

    # Three minutes later (the page's clock, moved on): the dialog offers to go on, and says so once.
    page.clock.fast_forward("03:05")
    again = page.get_by_role("button", name="Try again")
    expect(again).to_be_visible()
    expect(page.get_by_test_id("step-up-announcer")).to_have_text("You can try again now.")
    expect(page.get_by_test_id("step-up-wait")).to_have_text("You can try again now.")
    # FusionAuth's three minutes pass as well (its lock, in the dev server's state), and the telegram goes.
    stack.stack.fusionauth.directory.active_actions.clear()
    again.click()
    expect(code).to_be_focused()
    enter_and_see_it_sent(page, code, stack.totp_code("alice@example.com"), ["Eve"])
    # The activity panel tells FusionAuth's pause from ours.
    expect(
        page.get_by_test_id("activity").get_by_text(
            re.compile(r"^Account locked for (3 minutes|2 minutes \d+ seconds)")
        )
    ).to_be_visible()


def test_a_lock_without_an_end_still_says_contact_support(page: Page, stack: Stack) -> None:
    sign_in(page, stack, "alice@example.com")
    page.route(
        "**/api/step-up/finish",
        lambda route: answer(route, 403, {"error": "login_prevented", "error_description": "Locked."}),
    )
    compose(page, "Eve", "Let me in.")
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text(
        "Your account is locked or suspended. Please contact support."
    )
    expect(page.get_by_role("button", name="Close")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("form-error")).to_have_text(
        "Not sent. Your account is locked or suspended. Please contact support."
    )


def locked(retry_after: int | None, locked_until: datetime | None) -> dict[str, Any]:
    """The BFF's 429 for FusionAuth's lock with an end (README, Step-up), with either of its two ways to say when."""
    body: dict[str, Any] = {"error": "temporarily_locked", "error_description": "Locked for a while."}
    if retry_after is not None:
        body["retry_after"] = retry_after
    if locked_until is not None:
        body["locked_until"] = locked_until.isoformat()
    return body


@pytest.mark.parametrize(
    ("skew", "relative"),
    [(600, True), (-600, True), (600, False)],
    ids=["browser-10-min-fast", "browser-10-min-slow", "only-locked-until"],
)
def test_a_pause_ends_on_time_on_a_browser_whose_clock_is_minutes_off(
    page: Page, stack: Stack, skew: int, relative: bool
) -> None:
    """The browser's clock may be minutes off the server's. A lock's `locked_until` is the server's time: read
    against a clock 10 minutes fast it has passed already (the dialog would come back at once), against one 10 minutes
    slow it is 13 minutes away. So the wait counts `retry_after` seconds from when the answer arrived, on the
    browser's own clock: back after 3 minutes, neither before nor after. `locked_until` is used only when the answer
    has no `retry_after` (here written on the browser's clock, as a server whose clock agrees would)."""
    page.clock.install(time=time.time() + skew)
    sign_in(page, stack, "alice@example.com")
    server_now = datetime.now(UTC) + (timedelta() if relative else timedelta(seconds=skew))
    body = locked(180 if relative else None, server_now + timedelta(seconds=180))
    page.route("**/api/step-up/finish", answering(429, body))
    compose(page, "Eve", "Let me in.")
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text(
        re.compile(
            r"^Your account is locked\. You can try again (tomorrow )?at \d{1,2}:\d\d \(in (3 min|2 min \d+ s)\)\.$"
        )
    )
    again = page.get_by_role("button", name="Try again")
    wait = page.get_by_test_id("step-up-wait")
    page.clock.fast_forward("02:50")
    expect(wait).to_have_text(re.compile(r"^You can try again in \d+ s\.$"))  # not early ...
    expect(again).to_be_hidden()
    page.clock.fast_forward("00:15")
    expect(again).to_be_visible()  # ... nor late
    expect(wait).to_have_text("You can try again now.")


@pytest.mark.parametrize(
    ("seconds", "words", "support"),
    [
        (180, r"(tomorrow )?at \d{1,2}:\d\d \(in (3 min|2 min \d+ s)\)", False),
        (30 * 86_400, r"on .+ \(in 30 days\)", True),
    ],
    ids=["3-minutes", "30-days"],
)
def test_a_lock_with_an_end_says_when_and_a_long_one_who_to_ask(
    page: Page, stack: Stack, seconds: int, words: str, support: bool
) -> None:
    """A lock with an end is not always short: the tenant's 3 minutes after wrong codes, or an administrator's 30-day
    suspension (the BFF answers any lock ending within a year as temporarily_locked). Neither is called "a short
    while"; one ending more than a day away also says who to ask."""
    sign_in(page, stack, "alice@example.com")
    page.route(
        "**/api/step-up/finish",
        answering(429, locked(seconds, datetime.now(UTC) + timedelta(seconds=seconds))),
    )
    compose(page, "Eve", "Let me in.")
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    ask = " If you didn't expect this, contact support." if support else ""
    sentence = rf"Your account is locked\. You can try again {words}\.{re.escape(ask)}"
    expect(page.get_by_test_id("step-up-error")).to_have_text(re.compile(rf"^{sentence}$"))
    if not support:
        expect(dialog(page)).not_to_contain_text("support")
    expect(dialog(page)).not_to_contain_text("short while")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("form-error")).to_have_text(
        re.compile(rf"^Not sent\. {sentence} Your telegram is still here\.$")
    )


def test_a_wait_met_in_the_sign_in_dialog_pauses_it_like_any_other(page: Page, stack: Stack) -> None:
    """One set of pauses for every dialog (messages.js's PAUSES): the password's failure budget (429
    too_many_attempts, with retry_after) met in the sign-in code's dialog pauses it, with when, and it comes back by
    itself, like a step_up_blocked would; it is not "something went wrong", nor "Not sent"."""
    page.clock.install()
    stack.login_policy("Enabled")
    page.goto("/")
    fill_in(page, "alice@example.com", stack.password)
    expect(page.get_by_test_id("sign-in-factor-dialog")).to_be_visible()
    page.route(
        "**/auth/native/two-factor/finish",
        answering(429, {"error": "too_many_attempts", "error_description": "x", "retry_after": 120}),
    )
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("sign-in-factor-error")).to_have_text(
        re.compile(
            r"^Several sign-ins in a row didn't work, so signing in is paused for your safety\. You can try again "
            r"(tomorrow )?at \d{1,2}:\d\d \(in (2 min|1 min \d+ s)\)\.$"
        )
    )
    again = page.get_by_role("button", name="Sign in again")
    expect(again).to_be_hidden()
    expect(page.get_by_role("button", name="Cancel")).to_be_focused()
    page.clock.fast_forward("02:05")
    expect(again).to_be_visible()
    expect(page.get_by_test_id("sign-in-factor-announcer")).to_have_text("You can try again now.")


# ---- 5. the resend wait and the code survive Cancel ------------------------------------------------------------------


@pytest.mark.parametrize("stack", [{"resend_cooldown": 8}], indirect=True)
def test_cancel_and_reopen_keeps_the_resend_wait_and_never_strands_the_person(page: Page, stack: Stack) -> None:
    """The server spaces sends per person: reopened within the wait, the dialog says how long is left (no "please
    wait a moment" after a refused send), tells when a new code can be asked for, and then it works. The code
    emailed for the cancelled confirmation is not offered: it named another confirmation (and another twoFactorId)."""
    traffic = Traffic.watch(page)
    sign_in(page, stack, "bob@example.com")
    compose(page, "Alice", "Thanks for the tea.")
    page.get_by_role("button", name="Send code").click()
    expect(page.get_by_label("Verification code")).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    expect(dialog(page)).to_be_hidden()

    page.get_by_role("button", name="Send telegram").click()
    expect(dialog(page)).to_be_visible()
    send = page.get_by_test_id("step-up-send")
    expect(send).to_be_focused()
    expect(send).to_have_attribute("aria-disabled", "true")
    expect(page.get_by_test_id("step-up-resend-wait")).to_have_text(
        re.compile(r"^A code was sent a moment ago\. You can ask for another in [1-8] s\.$")
    )
    expect(page.get_by_test_id("step-up-error")).to_be_hidden()  # nothing went wrong: no error
    expect(page.get_by_test_id("step-up-announcer")).to_have_text("You can ask for a new code now.", timeout=12_000)
    expect(send).to_have_attribute("aria-disabled", "false")
    page.keyboard.press("Enter")
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    enter_and_see_it_sent(page, code, stack.emailed_code("bob@example.com"), ["Alice"])
    assert traffic.statuses("POST", "/api/step-up/send") == [200, 200]  # never a send the server had to refuse


def test_a_send_the_server_refuses_as_too_soon_shows_the_wait_calmly(page: Page, stack: Stack) -> None:
    """A code sent from another tab, or before a reload: the server's 429 resend_too_soon becomes the same wait,
    with the code field hidden until this dialog's code is sent."""
    sign_in(page, stack, "bob@example.com")
    page.route(
        "**/api/step-up/send",
        lambda route: answer(route, 429, {"error": "resend_too_soon", "error_description": "Wait.", "retry_after": 3}),
    )
    compose(page, "Alice", "Thanks for the tea.")
    page.get_by_role("button", name="Send code").click()
    alert = page.get_by_test_id("step-up-error")
    expect(alert).to_have_text("A code was sent a moment ago. You can ask for another in 3 seconds.")
    expect(alert).to_have_attribute("data-tone", "info")
    expect(page.get_by_test_id("step-up-resend-wait")).to_contain_text("You can ask for another in")
    expect(page.get_by_role("button", name="Send code")).to_be_focused()


# ---- 6. a block's length is said once; no live region ticks ----------------------------------------------------------


@pytest.mark.parametrize("stack", [{"max_attempts": 2, "max_failures": 2}], indirect=True)
def test_a_block_is_announced_once_with_its_length_and_the_countdown_is_silent(page: Page, stack: Stack) -> None:
    """WCAG 4.1.3: the alert says how long (and until when) once; the countdown beside it ticks outside every live
    region, so a screen reader is not made to read every second."""
    page.clock.install()
    sign_in(page, stack, "alice@example.com")
    compose(page, "Eve", "Nothing to see here.")
    code = page.get_by_label("Verification code")
    code.fill(wrong_totp(stack, "alice@example.com"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text("That code didn't work. 1 attempt left.")
    watch_live_regions(page)
    code.fill(wrong_totp(stack, "alice@example.com"))
    page.keyboard.press("Enter")
    alert = page.get_by_test_id("step-up-error")
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_have_text(
        re.compile(r"paused for your safety\. You can try again (tomorrow )?at \d{1,2}:\d\d \(in 1[45] min")
    )
    wait = page.get_by_test_id("step-up-wait")
    expect(wait).to_have_text(re.compile(r"^You can try again in 1[45] min( \d+ s)?\.$"))
    assert wait.evaluate("(element, selector) => element.closest(selector)", LIVE) is None
    first = wait.text_content()
    announced = len(live_changes(page))
    page.clock.run_for("00:03")  # three ticks of the page's clock, at once
    expect(wait).not_to_have_text(first or "")  # it ticked ...
    assert len(live_changes(page)) == announced, live_changes(page)  # ... and no live region changed meanwhile
    assert announced >= 1 and all("try again" in change for change in live_changes(page)[-1:])


def test_a_pause_while_setting_up_an_app_says_until_when_and_ends_by_itself(page: Page, stack: Stack) -> None:
    """Wrong codes typed while adding an authenticator app count with step-up's, so the same pause can come there:
    said once with its end, and "Start again" comes back by itself when it is over."""
    page.clock.install()
    sign_in_natively(page, stack, "dave@example.com")
    page.get_by_role("button", name="Add an authenticator app").click()
    wizard = enrolment(page)
    app = scanned(page)
    blocked = {"error": "step_up_blocked", "error_description": "x", "retry_after": 120}
    page.route("**/api/factors/authenticator/confirm", answering(429, blocked))
    type_code(page, app.now())
    error = wizard.get_by_test_id("enrol-error")
    expect(error).to_have_text(
        re.compile(
            r"^Several codes in a row didn't work, so confirming is paused for your safety\. You can try again "
            r"(tomorrow )?at \d{1,2}:\d\d \(in 2 min\)\.$"
        )
    )
    restart = wizard.get_by_role("button", name="Start again")
    expect(restart).to_be_hidden()
    expect(wizard.get_by_role("button", name="Close")).to_be_focused()

    page.clock.fast_forward("02:05")
    expect(restart).to_be_visible()
    expect(error).to_have_text("You can try again now.")
    page.unroute("**/api/factors/authenticator/confirm")
    restart.click()
    type_code(page, scanned(page).now())
    expect(wizard.get_by_test_id("enrol-recovery-codes").locator("li")).to_have_count(10)


# ---- 7. errors tied to the field; nothing hover-only --------------------------------------------------------------


def test_a_wrong_code_marks_the_field_and_is_read_with_it(page: Page, stack: Stack) -> None:
    """WCAG 3.3.1: aria-invalid and the error in the field's description; both go as the person types again."""
    sign_in(page, stack, "alice@example.com")
    compose(page, "Eve", "Nothing to see here.")
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    expect(code).not_to_have_attribute("aria-invalid", "true")
    assert page.locator("[title]").count() == 0  # nothing hover-only in the dialog either
    page.keyboard.press("Enter")  # nothing typed
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(code).to_have_accessible_description(re.compile(r"Enter the 6-digit code .* Enter the code first\.$"))
    code.fill(wrong_totp(stack, "alice@example.com"))
    expect(code).not_to_have_attribute("aria-invalid", "true")
    page.keyboard.press("Enter")
    expect(code).to_have_attribute("aria-invalid", "true")
    expect(code).to_have_accessible_description(re.compile(r"That code didn't work\. 3 attempts left\.$"))
    expect(code).to_be_focused()
    page.keyboard.type("1")
    expect(code).not_to_have_attribute("aria-invalid", "true")
    expect(code).to_have_accessible_description("Enter the 6-digit code your authenticator app shows now.")


@pytest.mark.parametrize("stack", [{"resend_cooldown": 4, **UNBOUND}], indirect=True)
def test_no_explanation_is_hover_only(page: Page, stack: Stack) -> None:
    """Touch and keyboard users never see a `title`: what the badge, the times and the addresses mean is in words."""
    sign_in_natively(page, stack, "alice@example.com")
    compose(page, "Grandma", "Hello!")
    expect(dialog(page)).to_be_visible()
    assert page.locator("[title]").count() == 0
    page.get_by_label("Verification code").fill(stack.totp_code("alice@example.com"))
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("telegram")).to_have_count(1)
    expect(page.get_by_test_id("elevated-badge")).to_have_text(re.compile(r"^No code needed for \d:\d\d$"))
    expect(page.get_by_test_id("activity-item").first).to_be_visible()
    expect(page.get_by_test_id("telegram").locator("time")).to_have_text(re.compile(r"^Sent today at \d{1,2}:\d\d"))
    expect(page.get_by_test_id("activity-item").first).to_contain_text("Address 127.0.0.1")
    assert page.locator("[title]").count() == 0


# ---- 8. the person's font size, and a dark theme ------------------------------------------------------------------


def test_text_follows_the_browsers_font_size(page: Page, stack: Stack) -> None:
    """WCAG 1.4.4: no px font sizes; Chromium's font-size setting (CDP Page.setFontSizes, what Settings ->
    Appearance -> Font size sets) enlarges body text, labels, buttons and small print alike."""
    selectors = ["body", "label[for=login-id]", "#password", ".explainer", ".footer", "[data-testid=sign-in-submit]"]

    def sizes() -> list[float]:
        return [
            float(page.locator(selector).first.evaluate("(e) => getComputedStyle(e).fontSize").removesuffix("px"))
            for selector in selectors
        ]

    page.goto("/")
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    default = sizes()
    assert default[0] == 16
    cdp = page.context.new_cdp_session(page)
    cdp.send("Page.setFontSizes", {"fontSizes": {"standard": 24, "fixed": 20}})
    page.reload()
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    larger = sizes()
    assert larger[0] == 24
    for selector, before, after in zip(selectors, default, larger, strict=True):
        assert after == pytest.approx(before * 1.5, abs=0.6), selector
    no_horizontal_scroll(page)


def test_dark_mode_follows_the_system_with_the_same_contrast(page: Page, stack: Stack, screenshot: Screenshot) -> None:
    page.emulate_media(color_scheme="dark")
    sign_in_natively(page, stack, "alice@example.com")
    assert page.evaluate("() => getComputedStyle(document.documentElement).colorScheme") == "light dark"
    background = colour_of(page, "--bg")
    text = page.locator("body").evaluate("(e) => getComputedStyle(e).color")
    assert luminance(parse_colour(background)) < 0.05 < luminance(parse_colour(text))
    for name in ("--text", "--muted", "--accent-strong", "--error", "--success", "--warning", "--info"):
        assert contrast(colour_of(page, name), background) >= 4.5, name
    assert contrast(colour_of(page, "--on-accent"), colour_of(page, "--accent")) >= 4.5
    compose(page, "Grandma", "Good night!")
    expect(page.get_by_label("Verification code")).to_be_focused()
    assert luminance(parse_colour(dialog(page).evaluate("(e) => getComputedStyle(e).backgroundColor"))) < 0.05
    screenshot(page, "dark-step-up-dialog")


# ---- 9. plain words, and a recovery code -----------------------------------------------------------------------------


def test_a_recovery_code_is_another_way_in_and_the_field_then_takes_letters(
    page: Page, stack: Stack, screenshot: Screenshot
) -> None:
    """Dave lost his phone but kept the recovery codes his first authenticator app brought."""
    _, codes = a_first_authenticator(stack, "dave@example.com")
    sign_in(page, stack, "dave@example.com")
    compose(page, "Alice", "I lost my phone, but not my recovery codes.")
    expect(page.get_by_label("Verification code")).to_be_focused()
    expect(page.get_by_label("Verification code")).to_have_attribute("inputmode", "numeric")
    page.get_by_role("button", name="Use a recovery code").click()
    field = page.get_by_label("Recovery code")
    expect(field).to_be_focused()
    expect(field).to_have_attribute("inputmode", "text")
    expect(field).not_to_have_attribute("pattern", re.compile(".*"))
    expect(field).to_have_accessible_description(re.compile("recovery codes you saved"))
    expect(page.get_by_role("radio")).to_have_count(0)  # choosing how to get a code does not apply
    screenshot(page, "step-up-recovery-code")
    # Typed by hand, in lower case (FusionAuth's codes are upper case).
    enter_and_see_it_sent(page, field, codes[0].lower(), ["Alice"])
    # Each works once: the same code again is a wrong code, tied to the field.
    compose(page, "Alice", "Again.")
    page.get_by_role("button", name="Use a recovery code").click()
    page.keyboard.type(codes[0])
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text("That code didn't work. 3 attempts left.")
    expect(field).to_have_attribute("aria-invalid", "true")
    # And back: in the normal field, letters are explained, not sent.
    page.get_by_role("button", name="Use your authenticator app instead").click()
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    page.keyboard.type(codes[1])
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("step-up-error")).to_have_text(
        'This code has letters. If it is a recovery code, choose "Use a recovery code" below.'
    )
    expect(code).to_have_attribute("aria-invalid", "true")


def test_plain_words_everywhere(page: Page, stack: Stack) -> None:
    """None of "second factor", "challenge", "elevated", "sign-in service", "step-up", "privileged" on screen, in
    the states a person meets: signed out (the explainer names step-up authentication once, as what it is called),
    signed in with a fresh confirmation, the dialog, a wrong code, a restart, a pause."""
    page.goto("/?error=fusionauth_unavailable")
    expect(page.get_by_role("alert")).to_have_text(
        "Signing in isn't available right now. Please try again in a moment."
    )
    no_jargon(page)
    sign_in_natively(page, stack, "alice@example.com")
    no_jargon(page)
    compose(page, "Eve", "Hello.")
    expect(page.get_by_label("Verification code")).to_be_focused()
    no_jargon(page)
    for _ in range(4):
        page.get_by_label("Verification code").fill(wrong_totp(stack, "alice@example.com"))
        page.keyboard.press("Enter")
        page.wait_for_function("() => !document.querySelector('dialog[open] form[aria-busy=true]')")
        no_jargon(page)
    expect(page.get_by_role("button", name="Start again")).to_be_visible()
    page.route(
        "**/api/step-up/start",
        lambda route: answer(route, 429, {"error": "too_many_starts", "error_description": "x", "retry_after": 300}),
    )
    page.get_by_role("button", name="Start again").click()
    expect(page.get_by_test_id("step-up-error")).to_contain_text("Confirming was started many times")
    no_jargon(page)
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("Not sent.")
    no_jargon(page)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (
            {"error": "account_not_found", "error_description": "x"},
            "Your account no longer exists. Please contact support.",
        ),
        (locked(180, None), "Your account is locked. You can try again"),
    ],
    ids=["account-problem", "pause"],
)
def test_only_the_telegrams_own_error_speaks_of_the_telegram(
    page: Page, stack: Stack, body: dict[str, Any], said: str
) -> None:
    """An account problem or a pause met by another panel (here loading the ways to confirm) is said as it is; "Not
    sent" and "Your telegram is still here" belong to the answer to Send, where they are still said."""
    page.route("**/api/factors", answering(403 if body["error"] == "account_not_found" else 429, body))
    sign_in(page, stack, "alice@example.com")
    factors_error = page.get_by_test_id("factors-error")
    expect(factors_error).to_contain_text(f"Couldn't load your ways to confirm it's you. {said}")
    expect(factors_error).not_to_contain_text("Not sent")
    expect(factors_error).not_to_contain_text(re.compile("telegram", re.IGNORECASE))

    status = 403 if body["error"] == "account_not_found" else 429
    page.route(
        "**/api/telegrams",
        lambda route: answer(route, status, body) if route.request.method == "POST" else route.continue_(),
    )
    compose(page, "Eve", "Hello.")
    form_error = page.get_by_test_id("form-error")
    expect(form_error).to_contain_text(f"Not sent. {said}")
    expect(form_error).to_contain_text("Your telegram is still here." if status == 429 else "contact support")


# ---- axe-core over the main states ---------------------------------------------------------------------------------


@pytest.fixture
def axe_page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A page whose CSP is bypassed, in this context only, so that axe-core can be injected as an inline script."""
    if not AXE.is_file():
        reason = f"axe-core is not installed ({AXE.relative_to(ROOT)}): npm ci --prefix tests/browser/node"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires the accessibility pass to run")
        print(f"skipping the axe-core pass: {reason}")  # noqa: T201 - the reason should be visible in the run's output
        pytest.skip(reason)
    with watched_page(browser, stack, bypass_csp=True) as new_page:
        yield new_page


class Axe:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.checked: list[str] = []

    def check(self, state: str) -> None:
        page = self.page
        if not page.evaluate("() => typeof window.axe === 'object'"):
            page.add_script_tag(path=str(AXE))
        violations = page.evaluate(
            """async (tags) => {
              // Colours are measured as they are, not half-way through a button's hover or state transition.
              await Promise.all(document.getAnimations().map((animation) => animation.finished.catch(() => {})));
              const options = { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] };
              const result = await axe.run(document, options);
              return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(" ")}: ${n.failureSummary}`) }));
            }""",
            AXE_TAGS,
        )
        assert violations == [], f"axe-core in state {state!r}: {json.dumps(violations, indent=2)}"
        self.checked.append(state)


@pytest.fixture(params=["light", "dark"])
def axe(axe_page: Page, request: pytest.FixtureRequest) -> Axe:
    """axe-core on `axe_page`, in the light theme and in the dark one (each test runs in both)."""
    axe_page.emulate_media(color_scheme=request.param)
    return Axe(axe_page)


def test_axe_finds_nothing_signed_out_signed_in_and_at_each_step_of_the_dialog(axe: Axe, stack: Stack) -> None:
    page = axe.page
    page.goto("/")
    expect(page.get_by_test_id("sign-in-form")).to_be_visible()
    axe.check("signed out")
    page.goto("/?error=login_expired")
    expect(page.get_by_role("alert")).to_be_visible()
    axe.check("signed out, with a sign-in error")
    fill_in(page, "alice@example.com", "not-the-password")
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("don't match")
    axe.check("a wrong password")

    held: list[Route] = []
    page.route("**/api/step-up/start", lambda route: held.append(route))
    sign_in_natively(page, stack, "alice@example.com")
    expect(page.get_by_test_id("activity-item").first).to_be_visible()
    axe.check("signed in, with the activity panel")
    compose(page, "Grandma", "Happy birthday!")
    expect(page.get_by_test_id("step-up-loading")).to_be_visible()
    axe.check("the dialog, loading")
    held[0].continue_()
    page.unroute("**/api/step-up/start")
    code = page.get_by_label("Verification code")
    expect(code).to_be_focused()
    axe.check("the dialog, asking for an authenticator code")
    code.fill(wrong_totp(stack, "alice@example.com"))
    page.keyboard.press("Enter")
    expect(code).to_have_attribute("aria-invalid", "true")
    axe.check("the dialog, a wrong code")
    page.get_by_role("button", name="Use a recovery code").click()
    expect(page.get_by_label("Recovery code")).to_be_focused()
    axe.check("the dialog, a recovery code")
    page.get_by_role("button", name="Use your authenticator app instead").click()
    for _ in range(3):
        code.fill(wrong_totp(stack, "alice@example.com"))
        page.keyboard.press("Enter")
        page.wait_for_function("() => !document.querySelector('dialog[open] form[aria-busy=true]')")
    expect(page.get_by_role("button", name="Start again")).to_be_focused()
    axe.check("the dialog, start again")
    page.get_by_role("button", name="Start again").click()
    expect(code).to_be_focused()
    for status, body, state in [
        (429, {"error": "step_up_blocked", "error_description": "x", "retry_after": 900}, "paused by the BFF"),
        (
            429,
            {"error": "temporarily_locked", "error_description": "x", "retry_after": 180},
            "locked until a known time",
        ),
        (403, {"error": "login_prevented", "error_description": "x"}, "locked without an end"),
    ]:
        page.route("**/api/step-up/finish", answering(status, body))
        code.fill(stack.totp_code("alice@example.com"))
        page.keyboard.press("Enter")
        expect(page.get_by_role("button", name=re.compile("^(Cancel|Close)$"))).to_be_focused()
        axe.check(f"the dialog, {state}")
        page.unroute("**/api/step-up/finish")
        page.keyboard.press("Escape")
        expect(dialog(page)).to_be_hidden()
        expect(page.get_by_test_id("form-error")).to_contain_text("Not sent.")
        axe.check(f"the page after the dialog, {state}")
        page.get_by_role("button", name="Send telegram").click()
        expect(code).to_be_focused()
    enter_and_see_it_sent(page, code, stack.totp_code("alice@example.com"), ["Grandma"])
    axe.check("signed in, a telegram sent")

    page.route(
        "**/api/telegrams",
        lambda route: route.abort("internetdisconnected") if route.request.method == "POST" else route.continue_(),
    )
    compose(page, "Grandpa", "Offline.")
    expect(page.get_by_test_id("form-error")).to_contain_text("Can't reach the server")
    axe.check("a network error")
    page.set_viewport_size({"width": 320, "height": 640})
    axe.check("signed in, 320 px")


def test_axe_finds_nothing_for_email_codes_no_way_to_confirm_and_setting_one_up(axe: Axe, stack: Stack) -> None:
    page = axe.page
    sign_in_natively(page, stack, "bob@example.com")
    compose(page, "Alice", "Thanks for the tea.")
    expect(page.get_by_role("button", name="Send code")).to_be_focused()
    axe.check("the dialog, before an email is sent")
    page.keyboard.press("Enter")
    expect(page.get_by_label("Verification code")).to_be_focused()
    expect(page.get_by_test_id("step-up-resend-wait")).not_to_be_empty()
    axe.check("the dialog, a code sent and the resend wait")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_test_id("signed-out")).to_be_visible()

    sign_in_natively(page, stack, "dave@example.com")
    compose(page, "Carol", "Welcome aboard!")
    expect(page.get_by_role("button", name="Set up an authenticator app")).to_be_focused()
    axe.check("the dialog, no way to confirm")
    no_jargon(page)
    page.set_viewport_size({"width": 320, "height": 640})
    axe.check("the dialog, no way to confirm, 320 px")
    page.get_by_role("button", name="Close").click()
    expect(page.get_by_test_id("form-error")).to_contain_text("Not sent yet")
    axe.check("the page after the no-factor dialog")

    # Adding one from the Security panel, still at 320 px: the QR code, a wrong code, the recovery codes.
    page.get_by_role("button", name="Add an authenticator app").click()
    wizard = enrolment(page)
    app = scanned(page)
    no_horizontal_scroll(page)
    axe.check("adding an authenticator app, 320 px")
    no_jargon(page)
    type_code(page, wrong_code(app))
    expect(wizard.get_by_label("Code from the app")).to_have_attribute("aria-invalid", "true")
    axe.check("adding an authenticator app, a wrong code")
    type_code(page, app.now())
    expect(wizard.get_by_test_id("enrol-recovery-codes").locator("li")).to_have_count(10)
    no_horizontal_scroll(page)
    fully_inside_the_window(wizard.get_by_test_id("enrol-recovery-codes"), page)
    axe.check("the recovery codes, 320 px")
    no_jargon(page)
    page.set_viewport_size(VIEWPORT)
    wizard.get_by_label("I've stored these codes somewhere safe").check()
    wizard.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("factor")).to_have_count(1)
    axe.check("signed in, an authenticator app in the Security panel")
    no_jargon(page)
    # Removing it: what is lost, and the field that takes a recovery code too.
    page.get_by_role("button", name=re.compile(r"^Remove your authenticator app")).click()
    removal = page.get_by_test_id("remove-factor-dialog")
    expect(removal.get_by_label("Code")).to_be_focused()
    expect(removal.get_by_label("Code")).to_have_attribute("inputmode", "text")
    axe.check("removing a way to confirm")
    no_jargon(page)
    removal.get_by_role("button", name="Cancel").click()
    expect(removal).to_have_count(0)

    # The native sign-in's code, in its own dialog.
    page.set_viewport_size(VIEWPORT)
    stack.login_policy("Enabled")
    page.get_by_role("button", name="Sign out", exact=True).click()
    expect(page.get_by_test_id("signed-out")).to_be_visible()
    fill_in(page, "alice@example.com", stack.password)
    expect(page.get_by_test_id("sign-in-factor-dialog")).to_be_visible()
    expect(page.get_by_label("Verification code")).to_be_focused()
    axe.check("the sign-in dialog")
