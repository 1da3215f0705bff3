"""The memory allocator under training: the choice read from LESIONLENS_ALLOCATOR, the restart of the
command with jemalloc / tcmalloc preloaded (and the environment it leaves to the programs it starts),
glibc told to keep freed memory, and the card recording what a run used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import write_class_folder

from lesionlens.training import allocator

SETTINGS = {"model": {"name": "lenet5", "pretrained": False, "image_size": 32},
            "train": {"epochs": 1, "batch_size": 8}, "data": {"num_workers": 0}}


def test_the_choice_comes_from_the_environment_and_a_wrong_one_is_named():
    assert allocator.requested({}) == "auto"
    assert allocator.requested({"LESIONLENS_ALLOCATOR": " JEMalloc "}) == "jemalloc"
    with pytest.raises(ValueError, match=r"LESIONLENS_ALLOCATOR='mimalloc' is not one of auto, jemalloc"):
        allocator.requested({"LESIONLENS_ALLOCATOR": "mimalloc"})


@pytest.fixture
def fake_libraries(tmp_path, monkeypatch):
    """A library folder holding a (fake) jemalloc and no tcmalloc, searched instead of the system's."""
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    monkeypatch.setattr(allocator, "_SEARCH", (str(tmp_path),))
    monkeypatch.setattr(allocator, "in_use", lambda: "glibc")
    return tmp_path


def test_a_restart_preloads_the_library_and_keeps_what_the_user_had(fake_libraries, monkeypatch):
    env = allocator.relaunch_environment("auto", {"LD_PRELOAD": "/opt/mine.so", "PATH": "/bin"})
    assert env["LD_PRELOAD"] == f"{fake_libraries / 'libjemalloc.so.2'} /opt/mine.so"
    assert env["MALLOC_CONF"] == allocator.JEMALLOC_CONF
    assert env["LESIONLENS_ALLOCATOR_RELAUNCHED"] == str(os.getpid())
    # in the restarted process: the user's own variables come back, so programs it starts inherit them
    monkeypatch.setattr(os, "environ", dict(env))
    allocator.restore_environment()
    assert os.environ["LD_PRELOAD"] == "/opt/mine.so"
    assert "MALLOC_CONF" not in os.environ and "PATH" in os.environ
    # ... and the restarted process (same pid) does not restart again
    assert allocator.relaunch_environment("auto", env) is None


def test_no_restart_when_not_asked_or_nothing_is_found(fake_libraries, monkeypatch):
    assert allocator.relaunch_environment("system", {}) is None
    assert allocator.relaunch_environment("glibc", {}) is None
    monkeypatch.setattr(allocator, "_SEARCH", (str(fake_libraries / "empty"),))
    assert allocator.relaunch_environment("auto", {}) is None  # auto: glibc, told to keep freed memory
    with pytest.raises(RuntimeError, match=r"LESIONLENS_ALLOCATOR=tcmalloc: no libtcmalloc_minimal.so\* found "
                                           r".*apt install libtcmalloc-minimal4"):
        allocator.relaunch_environment("tcmalloc", {})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_is_told_to_keep_freed_memory():
    assert allocator.keep_freed_memory() is True
    if allocator.in_use() == "glibc":
        assert allocator.prepare("glibc") == "glibc (keeps freed memory)"
    assert allocator.prepare("system") == allocator.prepare("auto") == allocator.in_use()


def _installed() -> str | None:
    found = [name for name in allocator.PREFERENCE if allocator.find_library(name)]
    if not found and os.environ.get("LESIONLENS_REQUIRE_ALLOCATOR") == "1":
        pytest.fail("LESIONLENS_REQUIRE_ALLOCATOR=1 but neither tcmalloc nor jemalloc is installed "
                    "(apt-get install libtcmalloc-minimal4)")
    return found[0] if found else None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD")
@pytest.mark.parametrize("choice", ["auto", "system"])
def test_the_train_command_restarts_itself_on_the_faster_allocator(tmp_path, choice):
    name = _installed()
    if name is None:
        pytest.skip("neither tcmalloc nor jemalloc is installed (apt-get install libtcmalloc-minimal4)")
    data = write_class_folder(tmp_path / "data")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(SETTINGS))
    env = {**os.environ, "LESIONLENS_ALLOCATOR": choice, "LESIONLENS_CACHE": str(tmp_path / "cache")}
    env.pop("LD_PRELOAD", None)
    done = subprocess.run([sys.executable, "-m", "lesionlens.cli", "train", "--config", str(tmp_path / "run.yaml"),
                           "--data", str(data), "--out", str(tmp_path / "run"), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    device = json.loads(Path(tmp_path / "run" / "card.json").read_text())["training"]["device"]
    assert device.endswith(f"{name} allocator)" if choice == "auto" else "glibc allocator)"), device


def test_processes_started_within_inherited_get_the_loaded_allocator(monkeypatch):
    monkeypatch.setattr(allocator, "loaded_library", lambda: Path("/usr/lib/libjemalloc.so.2"))
    monkeypatch.setenv("LD_PRELOAD", "/opt/mine.so")
    monkeypatch.delenv("MALLOC_CONF", raising=False)
    with allocator.inherited():
        assert os.environ["LD_PRELOAD"] == "/usr/lib/libjemalloc.so.2 /opt/mine.so"
        assert os.environ["MALLOC_CONF"] == allocator.JEMALLOC_CONF
    assert os.environ["LD_PRELOAD"] == "/opt/mine.so" and "MALLOC_CONF" not in os.environ


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD")
def test_a_preloaded_library_is_found_in_the_process_map():
    name = _installed()
    if name is None:
        pytest.skip("neither tcmalloc nor jemalloc is installed (apt-get install libtcmalloc-minimal4)")
    path = allocator.find_library(name)
    probe = "from lesionlens.training import allocator as a; print(a.loaded_library(), a.in_use(), a.describe('auto'))"
    for preload, expected in ((str(path), f"{path.resolve()} {name} {name}"), ("", "None glibc glibc")):
        done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "LD_PRELOAD": preload},
                              capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == expected.split(), done.stderr


def test_auto_prefers_tcmalloc_when_both_are_installed(fake_libraries):
    (fake_libraries / "libtcmalloc_minimal.so.4").write_bytes(b"")
    env = allocator.relaunch_environment("auto", {})
    assert env["LD_PRELOAD"] == str(fake_libraries / "libtcmalloc_minimal.so.4") and "MALLOC_CONF" not in env
    assert allocator.relaunch_environment("jemalloc", {})["LD_PRELOAD"].endswith("libjemalloc.so.2")
