"""``lesionlens monitor reference`` and ``lesionlens monitor``: the files they write, the registry's
champion, and their errors (a clear message and exit status 2, never a traceback)."""

from __future__ import annotations

import json
import shutil

from monitor_helpers import WINDOW

from lesionlens.bundle.registry import Registry
from lesionlens.cli import main
from lesionlens.upkeep.reference import load_reference


def test_reference_then_monitor_write_the_profile_and_the_report(monitored, tmp_path, capsys):
    images = tmp_path / "reference-images"
    shutil.copytree(monitored.reference.parent / "images", images)
    ref = tmp_path / "ref.npz"
    assert main(["monitor", "reference", str(monitored.bundle), "--data", str(images), "--out", str(ref),
                 "--windows", str(WINDOW), "--draws", "100", "--permutations", "100", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    profile = load_reference(ref)
    assert len(profile) == 60 and list(profile.calibrations) == [WINDOW]
    assert profile.digest[:16] in printed and f"windows of {WINDOW}:" in printed

    out = tmp_path / "report"
    assert main(["monitor", "--db", str(monitored.db), "--case-images", str(monitored.images), "--bundle",
                 str(monitored.bundle), "--reference", str(ref), "--window", str(WINDOW), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "latest window: DRIFT" in printed and "2 of 4 windows drifted" in printed
    report = json.loads((out / "monitor.json").read_text())
    assert report["reference"]["digest"] == profile.digest and len(report["windows"]) == 4
    html = (out / "monitor.html").read_text()
    assert "function drawMonitor" in html and 'id="monitor-data"' in html and "DRIFT" in html
    assert (out / "outputs.npz").is_file()  # kept for the next run


def test_monitor_follows_the_registry_champion(monitored, tmp_path, capsys):
    registry = tmp_path / "registry"
    reg = Registry.open(registry, create=True)
    digest, _ = reg.add(monitored.bundle, who="test")
    reg.promote(digest, reason="first champion", force=True, who="test")
    out = tmp_path / "report"
    assert main(["monitor", "--db", str(monitored.db), "--case-images", str(monitored.images), "--registry",
                 str(registry), "--reference", str(monitored.reference), "--out", str(out)]) == 0
    assert json.loads((out / "monitor.json").read_text())["bundle"]["digest"] == digest


def test_errors_are_one_clear_line(monitored, tmp_path, capsys):
    assert main(["monitor", "--db", str(monitored.db), "--bundle", str(monitored.bundle), "--out", str(tmp_path)]) == 2
    assert "needs --reference" in capsys.readouterr().err
    assert main(["monitor", "--db", str(monitored.db), "--bundle", str(monitored.bundle), "--reference",
                 str(tmp_path / "missing.npz"), "--out", str(tmp_path)]) == 2
    assert "missing.npz: no reference profile there" in capsys.readouterr().err
    assert main(["monitor", "reference", str(monitored.bundle), "--data", str(tmp_path / "nothing"),
                 "--out", str(tmp_path / "r.npz")]) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err
