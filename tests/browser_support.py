"""Browser-test support: Debian's headless Chromium driven by Playwright against pytest-django's live server.

The fixtures ``chromium`` and ``browser_page`` are in ``tests/conftest.py``;
mark the tests ``browser``. Chromium comes from Debian's package
(``apt-get install chromium``); Playwright's own browser download is not used.
Without it the tests skip locally and fail in CI (``PROMPTCTL_REQUIRE_SERVERS=1``).

Playwright's sync API runs an event loop in the test's thread, which makes
Django refuse ORM calls there as "async"; the page fixture allows them for the
duration of a browser test only (the ORM calls are still synchronous), and
closes the connection those calls opened when the test ends.
"""

from __future__ import annotations

import os

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


def admin_login(page, *, username: str, password: str) -> None:
    """Log in through the admin's own login form and wait for the index."""
    page.goto("/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/")
