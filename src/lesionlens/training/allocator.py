"""The C memory allocator under PyTorch on a CPU.

A training step on a CPU allocates and frees activations of tens of megabytes many times per step.
glibc's malloc hands memory of that size back to the kernel when it is freed (``munmap``, or a trim
of the heap), so the next step takes it again as fresh pages that the kernel must fault in and
zero: millions of page faults per minute, measured as a third or more of the step on a 2-core
machine (``benchmarks/train_throughput.py``). jemalloc and tcmalloc keep freed memory for reuse.
They can only replace malloc if they are loaded before the program starts (``LD_PRELOAD``), so the
``lesionlens`` command starts itself again with one of them preloaded when the system has one
(Debian / Ubuntu: ``apt install libtcmalloc-minimal4`` or ``libjemalloc2``); PyTorch's own CPU
launcher (``torch.backends.xeon.run_cpu``) does the same. Without either, glibc is kept as it is:
telling it to keep freed memory (``mallopt``; it still returns blocks over 32 MiB) measured +16% in
one run and -1% in another, so it is only an option.

Choose with ``LESIONLENS_ALLOCATOR``: ``auto`` (the default: tcmalloc, else jemalloc, else
glibc as it is), ``tcmalloc``, ``jemalloc``, ``glibc`` (glibc, told to keep freed memory) or
``system`` (whatever the process already has, untouched). The allocator a run used is written on its card.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

CHOICES = ("auto", "jemalloc", "tcmalloc", "glibc", "system")
ENV = "LESIONLENS_ALLOCATOR"
# What a library's file name starts with, and the Debian package that installs it.
LIBRARIES = {"tcmalloc": ("libtcmalloc_minimal.so", "libtcmalloc-minimal4"),
             "jemalloc": ("libjemalloc.so", "libjemalloc2")}
# ``auto`` takes the first found: tcmalloc trained EfficientNet-Lite0 7-9% faster than jemalloc in
# `lesionlens train` on a 2-core CPU (benchmarks/train_throughput.py, 2026-12-07).
PREFERENCE = tuple(LIBRARIES)
# jemalloc keeps freed pages (no decay) and serves large blocks from its own arenas (Intel's and
# PyTorch's CPU tuning guides recommend these settings for training).
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"
# Set in the environment of a process this module started again: the pid (exec keeps it) and the
# LD_PRELOAD / MALLOC_CONF the user had, restored once the process runs so that the programs it
# starts do not inherit the preload.
_RELAUNCHED, _SAVED = "LESIONLENS_ALLOCATOR_RELAUNCHED", "LESIONLENS_ALLOCATOR_SAVED_"
_SEARCH = ("{prefix}/lib", "/usr/local/lib", "/usr/local/lib64", "/usr/lib/x86_64-linux-gnu",
           "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def requested(environ: dict | None = None) -> str:
    """The allocator asked for by ``LESIONLENS_ALLOCATOR`` (``auto`` when unset)."""
    value = (environ if environ is not None else os.environ).get(ENV, "auto").strip().lower() or "auto"
    if value not in CHOICES:
        raise ValueError(f"{ENV}={value!r} is not one of {', '.join(CHOICES)}")
    return value


def find_library(name: str) -> Path | None:
    """The file of jemalloc or tcmalloc on this system, looked for where PyTorch's launcher looks
    (the Python environment's lib folder first, then the system's)."""
    stem = LIBRARIES[name][0]
    for folder in _SEARCH:
        path = Path(folder.format(prefix=sys.prefix))
        found = sorted(path.glob(stem + "*")) if path.is_dir() else []
        if found:
            return found[0]
    return None


def loaded_library() -> Path | None:
    """The file of the jemalloc or tcmalloc this process runs on, if it runs on one."""
    maps = Path("/proc/self/maps")
    for line in (maps.read_text() if maps.exists() else "").splitlines():
        path = line.split()[-1]
        if any(Path(path).name.startswith(stem) for stem, _ in LIBRARIES.values()):
            return Path(path)
    return None


@contextlib.contextmanager
def inherited() -> Iterator[None]:
    """Within: Python processes started from this one (``multiprocessing`` spawn) get the allocator
    this process runs on, preloaded as it was here; outside, the environment is as it was."""
    library = loaded_library()
    if library is None:
        yield
        return
    saved = {key: os.environ.get(key) for key in ("LD_PRELOAD", "MALLOC_CONF")}
    os.environ["LD_PRELOAD"] = " ".join(filter(None, (str(library), saved["LD_PRELOAD"])))
    if "jemalloc" in library.name:
        os.environ["MALLOC_CONF"] = JEMALLOC_CONF
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def in_use() -> str:
    """The allocator this process runs on: jemalloc or tcmalloc when one is loaded, else the C library's."""
    maps = Path("/proc/self/maps")
    text = maps.read_text() if maps.exists() else ""
    for name, (stem, _) in LIBRARIES.items():
        if stem in text:
            return name
    return "glibc" if sys.platform.startswith("linux") else "system"


def relaunch_environment(choice: str, environ: dict | None = None) -> dict | None:
    """The environment to start this program again with the chosen allocator preloaded, or None when
    no restart is needed or possible (not Linux, already loaded, not found under ``auto``, or this
    process is itself the restart). Raises when a named allocator is not on the system."""
    environ = dict(os.environ if environ is None else environ)
    if choice in ("glibc", "system") or not sys.platform.startswith("linux"):
        return None
    if environ.get(_RELAUNCHED) == str(os.getpid()) or in_use() in LIBRARIES:
        return None
    names = PREFERENCE if choice == "auto" else (choice,)
    for name in names:
        path = find_library(name)
        if path is None:
            continue
        for key in ("LD_PRELOAD", "MALLOC_CONF"):
            environ[_SAVED + key] = environ.get(key, "")  # empty: was unset
        environ["LD_PRELOAD"] = " ".join(filter(None, (str(path), environ.get("LD_PRELOAD", ""))))
        if name == "jemalloc":
            environ["MALLOC_CONF"] = JEMALLOC_CONF
        environ[_RELAUNCHED] = str(os.getpid())
        return environ
    if choice != "auto":
        raise RuntimeError(f"{ENV}={choice}: no {LIBRARIES[choice][0]}* found in "
                           f"{', '.join(f.format(prefix=sys.prefix) for f in _SEARCH)}; install it "
                           f"(Debian / Ubuntu: apt install {LIBRARIES[choice][1]}) or set {ENV}=auto")
    return None


def restore_environment() -> None:
    """In a process this module restarted: put back the user's LD_PRELOAD and MALLOC_CONF, so that the
    programs it starts (a browser, a compiler) do not get the allocator; a ``lesionlens`` process it
    starts chooses its own."""
    for key in ("LD_PRELOAD", "MALLOC_CONF"):
        saved = os.environ.pop(_SAVED + key, None)
        if saved is None:
            continue
        if not saved:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse: blocks up to 32 MiB (its largest heap block)
    come from the heap, which grows by 256 MiB at a time and is trimmed only past 2 GiB of free top.
    False where the C library is not glibc."""
    libc_name = ctypes.util.find_library("c")
    if not sys.platform.startswith("linux") or libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    # mallopt takes an int: the largest trim threshold it can be given is 2 GiB
    ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TOP_PAD, 256 << 20) \
        and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return bool(ok)


def prepare(choice: str | None = None) -> str:
    """Settle this process's allocator as far as it can be settled from inside (the restart with a
    preloaded library is :func:`relaunch_environment`'s, done by the command line; ``glibc`` tells glibc
    to keep freed memory), and say which it is (:func:`describe`)."""
    choice = choice or requested()
    if in_use() == "glibc" and choice == "glibc":
        keep_freed_memory()
    return describe(choice)


def describe(choice: str | None = None) -> str:
    """The allocator this process runs on, as the card records it: ``tcmalloc``, ``jemalloc``,
    ``glibc (keeps freed memory)`` (``LESIONLENS_ALLOCATOR=glibc``, after :func:`prepare`), or the
    untouched ``glibc`` / ``system``."""
    current = in_use()
    return "glibc (keeps freed memory)" if current == "glibc" and (choice or requested()) == "glibc" else current
