"""The tiny bundle's reference profile and a case store it answered (tests/monitor_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from monitor_helpers import Monitored, fill_store, make_reference


@pytest.fixture(scope="session")
def reference_profile(exported_bundle, tmp_path_factory) -> Path:
    return make_reference(exported_bundle, tmp_path_factory.mktemp("reference"))


@pytest.fixture(scope="session")
def monitored(exported_bundle, reference_profile, tmp_path_factory) -> Monitored:
    return fill_store(exported_bundle, reference_profile, tmp_path_factory.mktemp("store"))
