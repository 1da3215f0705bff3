"""The model registry: immutable bundles by digest, gated promotions, rollback, a log that verifies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lesionlens.bundle.promotions import read_entries, replay
from lesionlens.bundle.registry import Registry, RegistryError, bundle_digest
from lesionlens.cli import main
from lesionlens.digest import canonical_json


def variant(bundle: Path, root: Path, n: int) -> Path:
    """A copy of ``bundle`` with a different card (so a different digest), same weights."""
    copy = Path(shutil.copytree(bundle, root / f"model-{n}"))
    card = json.loads((copy / "card.json").read_text())
    card["created"] = f"2026-01-{n + 1:02d}T00:00:00+00:00"
    (copy / "card.json").write_text(json.dumps(card))
    return copy


def gate_report(path: Path, champion: str | None, challenger: str, decision: str = "pass") -> Path:
    report = {"format": "lesionlens-gate/1", "champion": {"digest": champion}, "challenger": {"digest": challenger},
              "gate_set": {"digest": "f" * 64, "images": 10}, "decision": decision,
              "reasons": [] if decision == "pass" else ["sensitivity: lower bound -0.05 < -0.02"]}
    path.write_bytes(canonical_json(report))
    return path


@pytest.fixture
def two(exported_bundle, tmp_path) -> tuple[Registry, str, str]:
    """A registry with a first champion and a challenger."""
    a, b = variant(exported_bundle, tmp_path, 1), variant(exported_bundle, tmp_path, 2)
    registry = Registry.open(tmp_path / "reg", create=True)
    da, new = registry.add(a, who="alice")
    assert new
    registry.promote(da, reason="first model", who="alice")
    db, _ = registry.add(b, who="alice")
    registry.assign_challenger(db, who="alice")
    return registry, da, db


def test_a_bundle_is_copied_read_only_under_its_digest(exported_bundle, tmp_path):
    source = variant(exported_bundle, tmp_path, 1)
    registry = Registry.open(tmp_path / "reg", create=True)
    digest, new = registry.add(source)
    copy = registry.bundle_path(digest)
    assert new and digest == bundle_digest(source) == bundle_digest(copy)
    assert not (copy / "checkpoints").exists()  # resume state is not part of a model version
    assert not os.access(copy / "card.json", os.W_OK) or os.geteuid() == 0
    assert oct((copy / "card.json").stat().st_mode)[-3:] == "444"
    assert registry.add(source) == (digest, False)  # the same content is one version
    assert registry.state().aliases == {"champion": None, "challenger": None, "previous": None}


def test_a_damaged_or_unexported_bundle_is_refused_with_its_path(bundle_copy, tmp_path):
    registry = Registry.open(tmp_path / "reg", create=True)
    weights = (bundle_copy / "model.safetensors").read_bytes()
    (bundle_copy / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(RegistryError, match="model.safetensors.*does not match"):
        registry.add(bundle_copy)
    (bundle_copy / "model.safetensors").write_bytes(weights)
    (bundle_copy / "model.onnx").write_bytes(b"half an onnx file")
    with pytest.raises(RegistryError, match="model.onnx: missing or does not match"):
        registry.add(bundle_copy)
    card = json.loads((bundle_copy / "card.json").read_text())
    del card["onnx"]
    (bundle_copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(RegistryError, match="no ONNX export.*lesionlens export"):
        registry.add(bundle_copy)
    assert registry.state().bundles == ()


def test_the_champion_moves_only_on_a_passed_gate_naming_both(two, tmp_path):
    registry, da, db = two
    with pytest.raises(RegistryError, match="needs a passed gate report"):
        registry.promote("challenger", reason="better")
    with pytest.raises(RegistryError, match="did not pass"):
        registry.promote("challenger", reason="better", gate=gate_report(tmp_path / "g1.json", da, db, "fail"))
    with pytest.raises(RegistryError, match="compared with champion"):
        registry.promote("challenger", reason="better", gate=gate_report(tmp_path / "g2.json", db, db))
    with pytest.raises(RegistryError, match="about challenger"):
        registry.promote("challenger", reason="better", gate=gate_report(tmp_path / "g3.json", da, da))
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote("challenger", reason=" ", gate=gate_report(tmp_path / "g4.json", da, db))
    assert registry.state().champion == da
    entry = registry.promote(db[:8], reason="clinic B data", gate=gate_report(tmp_path / "g5.json", da, db))
    state = registry.state()
    assert (entry.basis, state.champion, state.aliases["previous"], state.aliases["challenger"]) == ("gate", db, da, None)
    assert registry.gate_path(entry.gate).read_bytes() == (tmp_path / "g5.json").read_bytes()
    assert registry.verify().ok


def test_force_needs_a_reason_and_is_logged_as_forced(two, tmp_path):
    registry, da, db = two
    entry = registry.promote("challenger", reason="gate set unavailable, clinical lead signed off", force=True,
                             gate=gate_report(tmp_path / "g.json", da, db, "fail"), who="carol")
    assert (entry.basis, entry.who, entry.gate is not None) == ("force", "carol", True)
    assert registry.verify().ok  # a forced move keeps the failed report it looked at, as evidence


def test_rollback_swaps_champion_and_previous(two, tmp_path):
    registry, da, db = two
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("bad")
    registry.promote("challenger", reason="r", gate=gate_report(tmp_path / "g.json", da, db))
    registry.rollback("false alarms at clinic B")
    assert (registry.state().champion, registry.state().aliases["previous"]) == (da, db)
    registry.rollback("it was the printer")  # and back
    assert registry.state().champion == db
    assert registry.verify().ok


def test_verify_finds_a_changed_entry_a_removed_entry_a_changed_bundle_and_report(two, tmp_path):
    registry, da, db = two
    registry.promote("challenger", reason="r", gate=gate_report(tmp_path / "g.json", da, db))
    log = registry.log_path
    original = log.read_text()

    log.write_text(original.replace('"reason":"r"', '"reason":"R"').replace('"reason": "r"', '"reason": "R"'))
    result = registry.verify()
    assert not result.ok and "entry 5: its hash does not match" in result.problems[0]
    with pytest.raises(RegistryError, match="entry 5"):
        registry.state()  # a server refuses the tampered log too

    lines = original.splitlines()
    log.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    assert "expected 3" in registry.verify().problems[0]
    log.write_text(original)
    assert registry.verify().ok

    target = registry.gate_path(read_entries(log)[-1].gate)
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b'"pass"', b'"PASS"'))
    assert any("report was changed" in p for p in registry.verify().problems)

    weights = registry.bundle_path(db) / "model.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(b"x" + weights.read_bytes()[1:])
    problems = registry.verify().problems
    assert any(db in p and "was changed" in p for p in problems)
    assert any("model.safetensors" in p for p in problems)


def test_a_missing_alias_target_is_named(two):
    registry, da, db = two
    folder = registry.bundle_path(db)
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    shutil.rmtree(folder)
    with pytest.raises(RegistryError, match=f"alias challenger points at bundle {db}, which is missing"):
        registry.state()


def test_a_crash_while_writing_the_log_leaves_the_old_aliases(two, tmp_path, monkeypatch):
    registry, da, db = two
    before = (registry.state(), registry.log_path.read_bytes())

    def crash(*args):
        raise OSError("power cut")

    monkeypatch.setattr("lesionlens.durable.os.replace", crash)
    with pytest.raises(OSError, match="power cut"):
        registry.promote("challenger", reason="r", gate=gate_report(tmp_path / "g.json", da, db))
    monkeypatch.undo()
    assert (registry.state(), registry.log_path.read_bytes()) == before
    assert registry.verify().ok


CHURN = """
import sys
from lesionlens.bundle.registry import Registry
registry = Registry.open(sys.argv[1])
registry.rollback("churn")
print("churning", flush=True)
while True:
    registry.rollback("churn")
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_killed_mid_rollback_the_log_still_verifies(two, tmp_path, delay):
    registry, da, db = two
    registry.promote("challenger", reason="r", gate=gate_report(tmp_path / "g.json", da, db))
    proc = subprocess.Popen([sys.executable, "-c", CHURN, str(registry.root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "churning\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = registry.state()  # whatever rollback was cut short, a whole log is in force
    assert {state.champion, state.aliases["previous"]} == {da, db}
    assert state.seq > 5
    entries = read_entries(registry.log_path)
    assert replay(entries).aliases == state.aliases


def test_history_and_verify_from_the_command_line(two, tmp_path, capsys):
    registry, da, db = two
    report = gate_report(tmp_path / "g.json", da, db)
    assert main(["registry", "promote", str(registry.root), "challenger", "--gate", str(report),
                 "--reason", "clinic B data", "--who", "bob"]) == 0
    assert main(["registry", "rollback", str(registry.root), "--reason", "alarms"]) == 0
    assert main(["registry", "history", str(registry.root)]) == 0
    out = capsys.readouterr().out
    assert f"on gate report {registry.gate_path(read_entries(registry.log_path)[4].gate).stem[:12]}" in out
    assert "bob" in out and "reason: alarms" in out and "model-2" in out
    assert main(["registry", "verify", str(registry.root)]) == 0
    assert "verified: 6 log entries" in capsys.readouterr().out
    assert main(["registry", "list", str(registry.root)]) == 0
    assert "champion" in capsys.readouterr().out
    assert main(["registry", "promote", str(registry.root), "zzzzzzzz", "--reason", "x"]) == 2
    assert "matches no bundle" in capsys.readouterr().err
    (registry.root / "aliases.json").write_text("{}")
    assert main(["registry", "verify", str(registry.root), "--quick"]) == 1
    assert "aliases.json: does not say what the log replays to" in capsys.readouterr().out


def test_a_folder_that_is_not_a_registry_is_refused(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "a.txt").write_text("x")
    with pytest.raises(RegistryError, match="not a LesionLens registry"):
        Registry.open(tmp_path / "stuff", create=True)
    with pytest.raises(RegistryError, match="no registry here"):
        Registry.open(tmp_path / "absent")
