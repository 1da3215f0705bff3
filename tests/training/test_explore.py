"""lesionlens explore: a grid on one split, within a budget, ranked in a leaderboard."""

from __future__ import annotations

import csv

import pandas as pd
from helpers import without_internet

from lesionlens.cli import main


def _rows(out):
    with (out / "leaderboard.csv").open() as f:
        return {(r["model"], r["strategy"], r["image_size"]): r for r in csv.DictReader(f)}


def test_explore_trains_the_grid_on_one_split_and_explains_what_it_skips(class_folder, tmp_path, capsys):
    out = tmp_path / "explore"
    args = ["explore", "--data", str(class_folder), "--out", str(out), "--models", "tiny_cnn,inception_v3",
            "--strategies", "scratch,shallow", "--sizes", "32,40", "--epochs", "1", "--budget-minutes", "30",
            "--set", "train.batch_size=8", "--set", "data.num_workers=0", "-q"]
    assert main(args) == 0
    rows = _rows(out)
    assert len(rows) == 8
    for size in ("32", "40"):
        trained = rows[("tiny_cnn", "scratch", size)]
        assert trained["status"] == "trained"
        assert 0 <= float(trained["balanced_accuracy"]) <= 1 and float(trained["gmacs"]) > 0
        assert int(trained["parameters"]) == 4_463 - 7 * 17 + 3 * 17  # `lesionlens models` says 4,463 for 7 classes
        skipped = rows[("tiny_cnn", "shallow", size)]
        assert skipped["status"] == "skipped" and "no pretrained weights" in skipped["reason"]
        assert "needs inputs of at least 75" in rows[("inception_v3", "scratch", size)]["reason"]
    first = pd.read_csv(out / "tiny_cnn-scratch-32" / "split.csv").set_index("sha256")["partition"].sort_index()
    second = pd.read_csv(out / "tiny_cnn-scratch-40" / "split.csv").set_index("sha256")["partition"].sort_index()
    assert first.equals(second)
    page = (out / "leaderboard.html").read_text()
    assert "tiny_cnn" in page and "needs inputs of at least 75" in page
    assert "leaderboard.csv" in capsys.readouterr().out

    # the same command again reads the finished bundles back instead of training them again
    assert main(args) == 0
    assert _rows(out)[("tiny_cnn", "scratch", "32")]["reason"] == "from an earlier explore"


def test_runs_that_cannot_fit_the_budget_are_skipped_with_the_estimate(class_folder, tmp_path):
    out = tmp_path / "tight"
    assert main(["explore", "--data", str(class_folder), "--out", str(out), "--models", "simple_cnn",
                 "--strategies", "scratch", "--sizes", "64", "--epochs", "50", "--budget-minutes", "0.001", "-q"]) == 0
    (row,) = _rows(out).values()
    assert row["status"] == "skipped" and row["reason"].startswith("needs about")
    assert not (out / "simple_cnn-scratch-64").exists()


def test_weights_that_cannot_be_loaded_are_tried_once(class_folder, tmp_path, monkeypatch):
    """efficientnet_lite0's weights fail (an empty folder, no package registry, no hub: all simulated
    offline); every later cell of that model says why without trying again."""
    from lesionlens.models import weights

    calls = []
    original = weights.load_pretrained

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr("lesionlens.models.registry.load_pretrained", counted)
    monkeypatch.delenv("LESIONLENS_WEIGHTS", raising=False)
    empty = tmp_path / "no-weights"
    empty.mkdir()
    monkeypatch.setattr(weights.PretrainedWeights, "cached_name", lambda self: "absent.safetensors")
    monkeypatch.setattr(weights, "_fetch_from_registry", lambda *a: (_ for _ in ()).throw(OSError("offline")))
    without_internet(monkeypatch)
    out = tmp_path / "e"
    assert main(["explore", "--data", str(class_folder), "--out", str(out), "--models", "efficientnet_lite0",
                 "--strategies", "shallow,features", "--sizes", "32", "--weights", str(empty),
                 "--budget-minutes", "600", "-q"]) == 0  # a budget no busy machine's estimate overruns
    rows = _rows(out)
    assert len(calls) == 1
    assert rows[("efficientnet_lite0", "shallow", "32")]["status"] == "failed"
    reasons = {r["reason"] for r in rows.values()}
    assert len(reasons) == 1 and "has no tf_efficientnet_lite0.pth" in reasons.pop()


def test_a_grid_of_top_models_trains_one_bundle_per_head(class_folder, tmp_path, capsys):
    from lesionlens.bundle.card import read_card

    out = tmp_path / "heads"
    args = ["explore", "--data", str(class_folder), "--out", str(out), "--models", "tiny_cnn", "--strategies",
            "scratch", "--sizes", "32", "--epochs", "1", "--budget-minutes", "600", "--set", "train.batch_size=8",
            "--set", "data.num_workers=0", "-q"]
    assert main(args + ["--head", "linear,max"]) == 0
    with (out / "leaderboard.csv").open() as f:
        rows = {r["head"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"linear", "max"} and all(r["status"] == "trained" for r in rows.values())
    assert rows["max"]["bundle"].endswith("tiny_cnn-scratch-32-max")
    assert read_card(out / "tiny_cnn-scratch-32-max").data["model"]["head"] == "max"
    assert read_card(out / "tiny_cnn-scratch-32").data["model"]["head"] == "linear"

    capsys.readouterr()
    assert main(args + ["--head", "linear,flat"]) == 2
    assert "unknown top model flat" in capsys.readouterr().err
