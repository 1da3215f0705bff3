"""A real `lesionlens serve` process for the serving tests, started once per session, and a real
headless browser for the page tests (Playwright driving Debian's chromium): skipped where either is
missing, unless LESIONLENS_REQUIRE_BROWSER=1 (CI), where their absence fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lesionlens.serving.process import server_process


@pytest.fixture(scope="session")
def live_server(exported_bundle):
    with server_process(exported_bundle) as (url, proc):
        yield url, proc


CHROMIUM = os.environ.get("LESIONLENS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package is not installed"
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("LESIONLENS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"LESIONLENS_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()
