"""Shared fixtures: small images made in tmp_path, a tiny trained and exported bundle, and the switch
for tests that need ../shared."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
from helpers import COLOURS, write_class_folder, write_image
from tiny_bundle import make_exported_bundle, make_segmentation_bundle

@pytest.fixture(scope="module")
def one_thread():
    """One PyTorch thread for a module's small 3D runs: a second thread gains nothing there, and on a
    shared machine it spin-waits for a busy core (measured 10-30x slower steps)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SHARED = Path(os.environ.get("LESIONLENS_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared")).resolve()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``shared`` skip when ../shared is absent, unless CI demands it
    (LESIONLENS_REQUIRE_SHARED=1), where a missing folder must fail rather than pass quietly."""
    if (SHARED / "data" / "ham10000").is_dir():
        return
    if os.environ.get("LESIONLENS_REQUIRE_SHARED") == "1":
        raise pytest.UsageError(f"LESIONLENS_REQUIRE_SHARED=1 but {SHARED}/data/ham10000 does not exist")
    skip = pytest.mark.skip(reason=f"needs the real data in {SHARED}")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own decoded-image cache, never the user's."""
    monkeypatch.setenv("LESIONLENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def shared() -> Path:
    return SHARED


@pytest.fixture
def class_folder(tmp_path) -> Path:
    """root/<class>/*.jpg with three separable classes, 12 images each."""
    return write_class_folder(tmp_path / "folder")


@pytest.fixture
def ham_layout(tmp_path) -> Path:
    """The official HAM10000 layout: metadata CSV + images/, two images per lesion for some."""
    root = tmp_path / "ham"
    lines = ["lesion_id,image_id,dx,dx_type,age,sex,localization"]
    n = 0
    for dx in ("mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"):
        for lesion in range(6):
            for k in range(1 + lesion % 2):
                image_id = f"ISIC_{n:07d}"
                write_image(root / "images" / f"{image_id}.jpg", COLOURS.get(dx, (100, 100, 100)), seed=n)
                lines.append(f"HAM_{dx}{lesion},{image_id},{dx},histo,50,male,back")
                n += 1
    (root / "HAM10000_metadata.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory) -> Path:
    """tiny_cnn trained for 2 epochs on three colour classes and exported to ONNX (made once)."""
    return make_exported_bundle(tmp_path_factory.mktemp("exported"))


@pytest.fixture(scope="session")
def segmentation_bundle(tmp_path_factory) -> Path:
    """A tiny_cnn U-Net (32 px) trained for 6 epochs on generated lesions and exported (made once)."""
    return make_segmentation_bundle(tmp_path_factory.mktemp("segmentation"))


@pytest.fixture(scope="session")
def multitask_bundle(tmp_path_factory) -> Path:
    """The same U-Net with a classification head too (two lesion tones), 2 epochs, exported (made once)."""
    return make_segmentation_bundle(tmp_path_factory.mktemp("multitask"), "multitask", epochs=2)


@pytest.fixture
def bundle_copy(exported_bundle, tmp_path) -> Path:
    """A copy to change (card, files) without touching the session's bundle."""
    return Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))


# The case store on PostgreSQL: tests read the server's URL from LESIONLENS_TEST_POSTGRES
# (`scripts/postgres.sh` starts one and prints it); each test gets a fresh database, dropped
# afterwards. Where the variable is unset they skip, unless LESIONLENS_REQUIRE_POSTGRES=1 (CI).
POSTGRES = os.environ.get("LESIONLENS_TEST_POSTGRES")


@pytest.fixture(scope="session")
def postgres_server() -> str:
    if not POSTGRES:
        if os.environ.get("LESIONLENS_REQUIRE_POSTGRES") == "1":
            pytest.fail("LESIONLENS_REQUIRE_POSTGRES=1 but LESIONLENS_TEST_POSTGRES is not set")
        pytest.skip("no PostgreSQL server: export LESIONLENS_TEST_POSTGRES=$(scripts/postgres.sh)")
    return POSTGRES


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the test server."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"lesionlens_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "cases.sqlite")
    return request.getfixturevalue("postgres_url")


# A real browser for the web pages and reports: Debian's chromium driven by Playwright (whose own
# browser download cannot work here). Skipped where either is missing, unless
# LESIONLENS_REQUIRE_BROWSER=1 (CI) makes that a failure.
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
