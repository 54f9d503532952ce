"""Debian's Chromium driven by Selenium, for the tests that look at what a page draws.

Without the browser (``apt-get install chromium chromium-driver``) or Selenium (the ``test``
extra) the tests skip, saying so; with ``CACHESTATUS_BROWSER`` or
``CACHESTATUS_REQUIRE_EXTERNAL`` set (``.ci/run``) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRED = bool(
    os.environ.get("CACHESTATUS_BROWSER") or os.environ.get("CACHESTATUS_REQUIRE_EXTERNAL")
)
HOW = (
    "the browser tests need Debian's Chromium and its driver (apt-get install chromium "
    "chromium-driver) and Selenium (pip install -e '.[test]')"
)


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    for program in (CHROMIUM, CHROMEDRIVER):
        if shutil.which(program) is None:
            return f"{program} is not installed"
    return None


def driver(folder: Path) -> Iterator[Any]:
    """A headless Chromium that logs every network request; skips (or fails) without one.
    The files it and its driver make in a temporary folder (its profile, and its singleton
    socket, which it leaves behind) are in ``folder``: a run leaves nothing in the system's."""
    missing = _missing()
    if missing is not None:
        message = f"{missing}: {HOW}"
        if REQUIRED:
            pytest.fail(message + "; CACHESTATUS_BROWSER is set, so they must run")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",  # Chromium refuses to run as root without it
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        # Nothing but the page: no first-run, update, sync or background requests, which a
        # closed network refuses, many at a time.
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    service = Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": str(folder)})
    browser = webdriver.Chrome(service=service, options=options)
    browser.set_script_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


def wait_ready(browser: Any, timeout: float = 30.0) -> None:
    """Wait for the page's ``window.cachestatus.ready``; fail with its errors otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if browser.execute_script("return !!(window.cachestatus && window.cachestatus.ready)"):
            return
        time.sleep(0.1)
    errors = browser.execute_script("return window.cachestatus && window.cachestatus.errors")
    pytest.fail(f"the page was not ready after {timeout} s: {errors}, {browser.get_log('browser')}")


def requested_urls(browser: Any) -> list[str]:
    """Every URL the page asked for so far, from Chrome's performance log."""
    urls = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls
