"""The browser of every browser test: Debian's Chromium through Playwright, never a
downloaded build, headless, with the same flags everywhere (e2e suite, catalog's admin
page). Screenshots go to `test-artifacts/`.

    browser = playwright.chromium.launch(**chromium_launch_options())
"""

from __future__ import annotations

import os
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in CI, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHROMIUM_MISSING = f"{CHROMIUM} is missing: apt-get install chromium (make install does)"


def chromium_installed() -> bool:
    return os.path.exists(CHROMIUM)


def chromium_launch_options() -> dict[str, Any]:
    """Keyword arguments for Playwright's `chromium.launch` (sync or async API)."""
    return {"executable_path": CHROMIUM, "headless": True, "args": list(CHROMIUM_ARGS)}
