"""Fixtures for the browser suite: the dev FusionAuth and the BFF on free localhost ports (support.dev_stack, built
as `stepup-bff dev` builds them), and Debian's Chromium.

Each test gets its own pair of servers (both start in well under a second), so no test sees another's telegrams,
challenges or failure counters; the browser is shared and each test gets a fresh context (no cookies carried over).

Chromium is Debian's package (`apt-get install chromium`): Playwright's own browser download cannot work here. When it
is missing the suite is skipped with the reason, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, ViewportSize, expect, sync_playwright

from support.dev_stack import RunningStack, ShiftedClock, running_stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
# The README's pictures, each taken by the browser test that reaches its state (`screenshot(page, name)`), and copied
# into docs/ when UPDATE_README_SCREENSHOTS=1 (`make screenshots`): after a change of the SPA's look, run that.
README_SCREENSHOTS = {
    "readme-step-up-dialog": ROOT / "docs" / "screenshot.png",
    "readme-native-sign-in": ROOT / "docs" / "screenshot-native.png",
    "readme-sessions": ROOT / "docs" / "screenshot-sessions.png",
}
VIEWPORT: ViewportSize = {"width": 1200, "height": 800}
# Without the background-networking flags Chromium keeps calling home, and this machine has no network.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Short waits everywhere: the stack is local, so anything slower than this is a bug worth seeing.
expect.set_options(timeout=10_000)


def find_chromium() -> str | None:
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        reason = "Chromium is not installed (apt-get install chromium); the browser tests need Debian's Chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}, and CI=true requires them to run")
        print(f"skipping browser tests: {reason}")  # noqa: T201 - the reason should be visible in the run's output
        pytest.skip(reason)
    return path


# Module scope, not session: while Playwright's sync API is alive its event loop counts as running in the main thread,
# and every later test that calls asyncio.run() (the store's, the sessions') would fail. Ending it with the module
# keeps the rest of the suite untouched.
@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # headless=False only stops Playwright adding its own --headless; --headless=new above is what runs.
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=False, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


# ---- the servers ---------------------------------------------------------------------------------------------------


@pytest.fixture
def fusionauth_clock() -> ShiftedClock:
    """The dev FusionAuth's clock: real time unless a test shifts it."""
    return ShiftedClock()


@pytest.fixture
def stack(tmp_path: Path, request: pytest.FixtureRequest, fusionauth_clock: ShiftedClock) -> Iterator[RunningStack]:
    """The servers. Step-up settings come from indirect parametrization, e.g.
    `@pytest.mark.parametrize("stack", [{"max_age": 8}], indirect=True)`; by default a 4-second resend cooldown."""
    overrides = getattr(request, "param", None) or {"resend_cooldown": 4}
    with running_stack(tmp_path, fusionauth_clock=fusionauth_clock, **overrides) as running:
        yield running


# ---- the page ------------------------------------------------------------------------------------------------------


@dataclass
class ConsoleLog:
    problems: list[str] = field(default_factory=list)

    def record(self, message: ConsoleMessage) -> None:
        text = message.text
        # Chromium logs every 4xx/5xx fetch answer as an error; those are the API working as designed.
        if message.type == "error" and not text.startswith("Failed to load resource"):
            self.problems.append(text)


@contextlib.contextmanager
def watched_page(browser: Browser, stack: RunningStack, **options: Any) -> Iterator[Page]:
    """A page in a context of its own (`options` for Browser.new_context), failing the test on console errors."""
    context = browser.new_context(viewport=VIEWPORT, base_url=stack.bff_url, locale="en-GB", **options)
    log = ConsoleLog()
    new_page = context.new_page()
    new_page.on("console", log.record)
    new_page.on("pageerror", lambda error: log.problems.append(f"uncaught: {error}"))
    yield new_page
    context.close()
    # CSP violations ("Refused to apply inline style ...") and uncaught exceptions land here.
    assert not log.problems, f"browser console errors: {log.problems}"


@pytest.fixture
def page(browser: Browser, stack: RunningStack) -> Iterator[Page]:
    with watched_page(browser, stack) as new_page:
        yield new_page


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """Save a screenshot to test-artifacts/screenshots/<name>.png (git-ignored); a README one also to docs/ when
    UPDATE_README_SCREENSHOTS=1."""

    def take(target: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
        target.screenshot(path=str(path), animations="disabled")
        if name in README_SCREENSHOTS and os.environ.get("UPDATE_README_SCREENSHOTS") == "1":
            shutil.copyfile(path, README_SCREENSHOTS[name])
        return path

    return take


def sign_in(page: Page, stack: RunningStack, login_id: str) -> None:
    """Sign in through the SPA's hosted-page button and the dev server's hosted login page."""
    page.goto("/")
    page.get_by_test_id("sign-in").click()
    page.get_by_label("Email").fill(login_id)
    page.get_by_label("Password").fill(stack.password)
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_test_id("signed-in")).to_be_visible()
    expect(page.get_by_test_id("telegrams-loading")).to_be_hidden()


def fill_in(page: Page, login_id: str, password: str) -> None:
    """The SPA's own sign-in form (login.native, which the dev stack turns on), filled in and sent."""
    page.get_by_label("Email or username").fill(login_id)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_in_natively(page: Page, stack: RunningStack, login_id: str) -> None:
    """Sign in with the SPA's own form: a sign-in that just happened."""
    page.goto("/")
    fill_in(page, login_id, stack.password)
    expect(page.get_by_test_id("signed-in")).to_be_visible()
    expect(page.get_by_test_id("telegrams-loading")).to_be_hidden()
