"""A real `lesionlens serve` process for the serving tests, started once per session (the real
browser they drive is the `browser` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest

from lesionlens.serving.process import server_process


@pytest.fixture(scope="session")
def live_server(exported_bundle):
    with server_process(exported_bundle) as (url, proc):
        yield url, proc


