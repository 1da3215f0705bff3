"""Case-store fixtures: a store on SQLite and on a real PostgreSQL (``store_url`` in tests/conftest.py)."""

from __future__ import annotations

import pytest

from lesionlens.cases.store import CaseStore


@pytest.fixture
def store(store_url, tmp_path):
    s = CaseStore.open(store_url, tmp_path / "case-images")
    yield s
    s.close()
