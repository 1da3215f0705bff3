"""A tiny trained and exported bundle for the serving tests, made once per session in tmp."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import COLOURS, write_image


def make_exported_bundle(root: Path) -> Path:
    """Train tiny_cnn for 2 epochs on three colour classes (named as diagnoses, so the malignant /
    melanoma views exist), then export it to ONNX with the check on its validation images."""
    from lesionlens.config import load_config
    from lesionlens.export import export_bundle
    from lesionlens.training.fit import train

    data = root / "images"
    for c, colour in COLOURS.items():
        for i in range(12):
            write_image(data / c / f"{c}_{i}.jpg", colour, seed=i, size=48)
    cfg = load_config(overrides={
        "data.path": str(data), "data.num_workers": 0, "data.cache_dir": str(root / "cache"),
        "model.name": "tiny_cnn", "model.pretrained": False, "model.image_size": 32,
        "train.epochs": 2, "train.batch_size": 8, "train.warmup_epochs": 0.0, "train.lr": 0.01,
    })
    bundle = root / "bundle"
    train(cfg, bundle, progress=False)
    export_bundle(bundle)
    return bundle


@pytest.fixture(scope="session")
def exported_bundle(tmp_path_factory) -> Path:
    return make_exported_bundle(tmp_path_factory.mktemp("serving"))


@pytest.fixture
def bundle_copy(exported_bundle, tmp_path) -> Path:
    """A copy to change (card, files) without touching the session's bundle."""
    return Path(shutil.copytree(exported_bundle, tmp_path / "bundle"))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(bundle: Path, *flags: str, timeout: float = 60.0):
    """`lesionlens serve BUNDLE` as a real process on 127.0.0.1; yields (base URL, process)."""
    import httpx

    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "lesionlens.cli", "serve", str(bundle), "--port", str(port), *flags],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become ready in {timeout} s")
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def live_server(exported_bundle):
    with running_server(exported_bundle) as (url, proc):
        yield url, proc
