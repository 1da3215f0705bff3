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
from serving.tiny_bundle import make_exported_bundle


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
