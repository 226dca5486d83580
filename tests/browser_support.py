"""Browser-test support: Debian's headless Chromium driven by Playwright against pytest-django's live server.

Use the fixtures from any test package by importing them into its conftest::

    from tests.browser_support import browser_page, chromium  # noqa: F401

and mark the tests ``browser``. Chromium comes from Debian's package
(``apt-get install chromium``); Playwright's own browser download is not used.
Without it the tests skip locally and fail in CI (``PROMPTCTL_REQUIRE_SERVERS=1``).

Playwright's sync API runs an event loop in the test's thread, which makes
Django refuse ORM calls there as "async"; the page fixture allows them for the
duration of a browser test only (the ORM calls are still synchronous), and
closes the connection those calls opened when the test ends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM_PATH = os.environ.get("PROMPTCTL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DEFAULT_TIMEOUT_MS = 15_000


@pytest.fixture
def chromium(monkeypatch) -> Iterator[object]:
    """A headless Chromium browser, started for one test (so no event loop outlives it)."""
    if not Path(CHROMIUM_PATH).exists():
        reason = f"needs Debian's chromium at {CHROMIUM_PATH} (apt-get install chromium)"
        if os.environ.get("PROMPTCTL_REQUIRE_SERVERS") == "1":
            pytest.fail(f"CI requires the browser but it is missing: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            # ORM calls made while Playwright's loop ran used a connection local to that
            # context; close it here, or it outlives the test and blocks dropping the test database.
            from django.db import connections

            connections.close_all()


@pytest.fixture
def browser_page(chromium, live_server):
    """A factory of fresh pages (one browser context each, so each person has their own cookies)."""
    contexts = []

    def new_page():
        context = chromium.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield new_page
    for context in contexts:
        context.close()


def admin_login(page, *, username: str, password: str) -> None:
    """Log in through the admin's own login form and wait for the index."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
