"""Regression end to end on generated images whose brightness sets the target: the bundle, its
card, the evaluation against the median, reloading, predict and evaluate on the CLI, bad targets
and the settings a regression run refuses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesionlens.bundle.card import read_card
from lesionlens.cli import main as cli
from lesionlens.config import ConfigError, load_config
from lesionlens.data.table import DataError
from lesionlens.inference import Predictor
from lesionlens.training.fit import train
from lesionlens.training.tasks import check_task


def write_brightness_table(root, n=80, seed=0, extra=None):
    """root/table.csv: image, value (0-100) and lesion_id; an image's grey level grows with its value."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["image,value,lesion_id"]
    for i in range(n):
        value = rng.uniform(0, 100)
        pixels = np.clip(40 + 1.6 * value + rng.normal(0, 15, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"img{i}.png")
        lines.append(f"img{i}.png,{value:.2f},L{i}")
    lines += extra or []
    (root / "table.csv").write_text("\n".join(lines) + "\n")
    return root / "table.csv"


def _cfg(table, **settings):
    overrides = {"data.path": str(table), "train.task": "regression", "data.target": "value",
                 "model.name": "tiny_cnn", "model.pretrained": False, "train.strategy": "scratch",
                 "model.image_size": 32, "train.epochs": 6, "train.batch_size": 8, "train.warmup_epochs": 0.0,
                 "train.lr": 0.01}
    overrides.update(settings)
    return load_config(overrides=overrides)


@pytest.fixture(scope="module")
def regressed(tmp_path_factory):
    table = write_brightness_table(tmp_path_factory.mktemp("bright"))
    out = tmp_path_factory.mktemp("run") / "bundle"
    return table, out, train(_cfg(table), out, progress=False)


def test_regression_bundle_learns_the_numbers_and_beats_the_median(regressed):
    table, out, result = regressed
    card = read_card(out)
    assert card.task == "regression" and card.training.monitor == "val_mae"
    reg = card.regression
    assert reg.targets == ["value"] and card.classes == ["value"] and reg.loss == "huber"
    values = pd.read_csv(table)["value"]
    split = pd.read_csv(out / "split.csv")
    train_ids = split.loc[split["partition"] == "train", "image_id"]
    trained = values[pd.read_csv(table)["image"].isin(train_ids)]
    assert reg.mean[0] == pytest.approx(trained.mean()) and reg.baseline[0] == pytest.approx(trained.median())
    f = reg.validation["value"]
    assert f["mae"]["estimate"] < 10, f  # grey level to value: easy once learnt; the median misses by ~25
    assert f["mae_vs_baseline"]["high"] < 0 and f["r2"]["estimate"] > 0.8
    assert result.regression.summary["value"]["mae"] == f["mae"]
    for name in ("regression_scatter", "regression_residuals", "regression_predictions", "learning_curves"):
        assert card.file(name) is not None, name


def test_reloaded_bundle_predicts_the_evaluated_values_from_files(regressed, tmp_path, capsys):
    table, out, result = regressed
    ev = result.regression
    paths = [table.parent / "images" / f"{i}" for i in ev.ids[:5]]
    values, failures = Predictor(out).predict_files(paths)
    assert not failures
    np.testing.assert_allclose(values[:, 0], ev.predicted[:5, 0], atol=1e-3)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    code = cli(["predict", str(out), *map(str, paths[:2]), str(bad), "--out", str(tmp_path / "p.csv")])
    rows = pd.read_csv(tmp_path / "p.csv")
    assert code == 1 and list(rows.columns) == ["path", "value", "error"]
    np.testing.assert_allclose(rows["value"][:2], ev.predicted[:2, 0], atol=1e-3)
    assert "broken.png" in rows["error"][2] and np.isnan(rows["value"][2])


def test_evaluate_on_new_data_writes_the_figures(regressed, tmp_path, capsys):
    table, out, result = regressed
    other = write_brightness_table(tmp_path / "other", n=30, seed=7)
    assert cli(["evaluate", str(out), "--data", str(other), "--out", str(tmp_path / "ev"), "-q"]) == 0
    said = capsys.readouterr().out
    assert "MAE" in said and "baseline" in said
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n_images"] == 30 and metrics["summary"]["value"]["mae"]["estimate"] < 15
    assert (tmp_path / "ev" / "scatter.png").is_file()


def test_bad_targets_are_listed_by_file_line_and_column(tmp_path):
    table = write_brightness_table(tmp_path, n=24, extra=["img0.png,,L100", "img1.png,old,L101"])
    with pytest.raises(DataError) as e:
        train(_cfg(table, **{"train.epochs": 1}), tmp_path / "out", progress=False)
    said = str(e.value)
    assert f"{table}:26: img0.png: target 'value' is empty" in said
    assert f"{table}:27: img1.png: target 'value' is not a number ('old')" in said
    with pytest.raises(ValueError, match="no column 'volume'"):
        train(_cfg(table, **{"data.target": "volume"}), tmp_path / "out2", progress=False)


def test_skip_leaves_out_exactly_the_bad_rows(tmp_path):
    table = write_brightness_table(tmp_path, n=30, extra=["extra.png,nan,L100"])
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "images" / "extra.png")
    out = tmp_path / "out"
    result = train(_cfg(table, **{"train.epochs": 1, "data.on_bad_input": "skip"}), out, progress=False)
    issues = pd.read_csv(out / "data_issues.csv")
    assert len(issues) == 1 and "not a number" in issues["problem"][0] and issues["row"][0] == 32
    assert read_card(out).dataset.n_images == 30 and len(result.regression.ids) == 6


@pytest.mark.parametrize("settings, message", [
    ({"train.strategy": "features"}, "strategy must be one of"),
    ({"train.sampler": "balanced"}, "balanced sampler"),
    ({"regression.box": True}, "a box has four targets"),
    ({"data.target": "x0,y0,x1,y1", "regression.box": True, "model.tta": "d4"}, "test-time augmentation"),
    ({"data.target": "a,,b"}, "expected one or more column names"),
    ({"data.target": "a,A"}, "named twice"),
])
def test_regression_refuses_what_it_cannot_do(tmp_path, settings, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        check_task(_cfg(tmp_path / "t.csv", **settings))


def test_other_tasks_refuse_a_target_and_the_mae_monitor(tmp_path):
    with pytest.raises(ConfigError, match="names the numbers of --task regression"):
        check_task(_cfg(tmp_path / "t.csv", **{"train.task": "classification"}))
    with pytest.raises(ConfigError, match="val_mae needs --task regression"):
        check_task(_cfg(tmp_path / "t.csv", **{"train.task": "classification", "data.target": None,
                                               "train.monitor": "val_mae"}))


def test_a_box_run_turns_geometric_augmentation_off(tmp_path):
    cfg = _cfg(tmp_path / "t.csv", **{"data.target": "x0,y0,x1,y1", "regression.box": True})
    check_task(cfg)
    a = cfg.augment
    assert (a.hflip, a.vflip, a.rotation, a.translate, tuple(a.zoom)) == (0, 0, 0, 0, (1.0, 1.0))
    assert a.brightness > 0 and cfg.train.monitor == "val_mae"


def test_export_checks_the_values_and_the_server_refuses_the_bundle(regressed, tmp_path):
    import shutil

    from lesionlens.bundle.schema import BundleError
    from lesionlens.export.onnx import describe_export, export_bundle
    from lesionlens.serving.runtime import BundleModel

    table, out, _ = regressed
    bundle = shutil.copytree(out, tmp_path / "bundle")
    info = export_bundle(bundle)
    assert info.outputs == ["logits"] and info.cam is None
    assert 0 <= info.check["max_abs_diff_in_sd"] <= info.check["tolerance_in_sd"] == 1e-4
    assert set(info.check["max_abs_value_diff"]) == {"value"}
    said = "\n".join(describe_export(info, bundle))
    assert "standard deviations" in said and "serve" not in said.splitlines()[-1].split("(")[0]
    with pytest.raises(BundleError, match="a regression bundle"):
        BundleModel(bundle)
