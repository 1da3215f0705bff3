"""Regression on volumes: a 3D classifier's outputs become the object's volume in mm^3 on
synthetic NIfTI volumes; the bundle records the targets' scale, the evaluation beats the training
median on volumes drawn with another seed, and predict gives the numbers.

The synthetic volumes are a functional check, not a benchmark (settings as in
test_volume_training: 24^3 voxels of 2 mm, one thread)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlens.bundle.card import read_card
from lesionlens.cli import main as cli
from lesionlens.config import ConfigError, load_config
from lesionlens.data.synthetic_volumes import write_synthetic_volumes
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.evaluation.volume_evaluate import evaluate_volume_bundle
from lesionlens.predict_volumes import VolumePredictor
from lesionlens.training.volume_fit import check_volume_run, train_volumes

PRE = VolumePreprocessing((24, 24, 24), (2.0, 2.0, 2.0), "zscore")


def _cfg(table, **extra):
    return load_config(None, {"data.path": str(table), "model.name": "tiny_cnn3d", "model.pretrained": False,
                              "train.strategy": "scratch", "train.epochs": 12, "train.batch_size": 4,
                              "train.lr": 3e-3, "model.drop_rate": 0.0, "train.task": "regression",
                              "data.target": "volume_mm3", **extra})


@pytest.fixture(scope="module")
def regressed(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("volume_regression")
    train_csv = write_synthetic_volumes(root / "train", per_class=20, seed=0)
    held_out = write_synthetic_volumes(root / "held_out", per_class=10, seed=1)
    result = train_volumes(_cfg(train_csv), root / "bundle", PRE, progress=False)
    return train_csv, held_out, result


def test_volume_regression_beats_the_median_on_other_volumes(regressed, tmp_path):
    train_csv, held_out, result = regressed
    card = read_card(result.bundle)
    assert card.task == "regression" and card.is_volume and card.regression.targets == ["volume_mm3"]
    assert card.training.monitor == "val_mae" and card.file("regression_scatter") is not None
    ev = evaluate_volume_bundle(card, held_out, tmp_path / "ev").regression
    f = ev.summary["volume_mm3"]
    truth = pd.read_csv(held_out)["volume_mm3"]
    assert len(ev.ids) == len(truth) == 30
    # the object's size is what the volume shows: far closer than the median of the training volumes
    assert f["mae_vs_baseline"]["high"] < 0 and f["r2"]["estimate"] > 0.5, f
    assert (tmp_path / "ev" / "scatter.png").is_file()


def test_predict_gives_the_evaluated_numbers(regressed, tmp_path):
    train_csv, held_out, result = regressed
    files = [held_out.parent / p for p in pd.read_csv(held_out)["path"][:3]]
    values = VolumePredictor(result.bundle).predict(files).values[:, 0]
    assert cli(["predict", str(result.bundle), *map(str, files), "--out", str(tmp_path / "p.csv")]) == 0
    rows = pd.read_csv(tmp_path / "p.csv")
    assert list(rows.columns) == ["path", "volume_mm3", "error"]
    np.testing.assert_allclose(rows["volume_mm3"], values, rtol=1e-5)


@pytest.mark.parametrize("extra, message", [
    ({"model.name": "tiny_unet3d"}, "is a mask model"),
    ({"regression.box": True}, "for 2D images"),
    ({"train.sampler": "balanced"}, "balanced sampler"),
])
def test_volume_regression_refuses_what_it_cannot_do(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        check_volume_run(_cfg(tmp_path / "v.csv", **extra))


def test_the_volume_regressor_exports_with_a_value_check(regressed, tmp_path):
    import shutil

    from lesionlens.export.onnx_volumes import export_volume_bundle

    bundle = shutil.copytree(regressed[2].bundle, tmp_path / "bundle")
    info = export_volume_bundle(bundle)
    assert info.check["max_abs_diff_in_sd"] <= 1e-4 and "volume_mm3" in info.check["max_abs_value_diff"]
