"""Playwright for Python driving Debian's chromium against the session's embedded stack."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser.support import launch

# The pipeline (clamd, resize, Kafka) takes seconds: expectations wait for what a user would see.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def browser():
    """One chromium per test module. Not per session: Playwright's sync API keeps an event loop
    running in this thread while it is open, and tests after these ones call asyncio.run."""
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser profile per test. Any uncaught script error or Content-Security-Policy
    violation on the page fails the test."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 860})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield page
    context.close()
    assert not problems, problems
