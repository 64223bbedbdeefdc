"""Debian's Chromium driven by Playwright (never Playwright's own download), and a live server.

Without Chromium the page tests skip, except in CI, where ``.ci/run`` installs it and a missing
browser must fail.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Long enough for a slow CI machine, short enough that a page that never comes fails soon.
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One Chromium per test module; each test gets its own profile from ``browser``."""
    if not os.path.exists(CHROMIUM) and not os.environ.get("CI"):
        pytest.skip("Debian chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """A fresh browser profile: no cookies from another test."""
    context = chromium.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def site(live_server: Any) -> Any:
    return live_server()
