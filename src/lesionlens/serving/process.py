"""``lesionlens serve`` as a child process, for scripts and tests that talk to a real server: start
it on a free port, wait until ``/readyz`` answers, stop it afterwards. Standard library only, so it
works in the serve-only install.

    with server_process(bundle, "--no-batching") as (url, proc):
        urllib.request.urlopen(f"{url}/healthz")
    with server_process(None, "--registry", registry_dir) as (url, proc):   # a registry's champion
        ...
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path


class ServerStartError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server_process(bundle: str | Path | None, *flags: str, host: str = "127.0.0.1", timeout: float = 60.0,
                   log_path: str | Path | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start ``lesionlens serve BUNDLE FLAGS`` (``serve FLAGS`` when ``bundle`` is None, for
    ``--registry DIR``) on ``host`` and a free port; yields (base URL, process)
    once ``/readyz`` answers 200. If the process exits first, or does not become ready within
    ``timeout`` seconds, :class:`ServerStartError` carries the end of its output. The server's
    output goes to ``log_path`` when given (appended), else to a temporary file."""
    port = free_port(host)
    log = open(log_path, "ab+") if log_path else tempfile.TemporaryFile()
    source = [] if bundle is None else [str(bundle)]
    proc = subprocess.Popen([sys.executable, "-m", "lesionlens.cli", "serve", *source, "--host", host,
                             "--port", str(port), *flags], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{host}:{port}"
    try:
        _wait_ready(url, proc, log, timeout)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            raise ServerStartError(f"the server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"the server did not become ready in {timeout:g} s")
        time.sleep(0.2)
