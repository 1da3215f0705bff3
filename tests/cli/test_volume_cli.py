"""``lesionlens train`` and ``predict`` on a CSV of NIfTI volumes, as a user types them."""

from __future__ import annotations

import pandas as pd
import pytest

from lesionlens.bundle.card import read_card
from lesionlens.cli import main
from lesionlens.data.synthetic_volumes import write_synthetic_volumes

VOLUME_RUN = ["--no-pretrained", "--strategy", "scratch", "--epochs", "2", "--batch-size", "4", "--workers", "0", "-q"]


def test_train_and_predict_on_volumes(tmp_path, capsys, one_thread):
    assert main(["demo-data", str(tmp_path / "data"), "--volumes", "--per-class", "6"]) == 0
    table = tmp_path / "data" / "volumes.csv"
    assert capsys.readouterr().out.strip() == str(table)
    assert main(["train", "--data", str(table), "--model", "tiny_cnn3d", "--out", str(tmp_path / "cls"),
                 *VOLUME_RUN]) == 0
    out = capsys.readouterr().out
    assert "task classification, volumes" in out and "tiny_cnn3d at 32x32x32 voxels of 1.5x1.5x1.5 mm" in out
    card = read_card(tmp_path / "cls")
    assert card.is_volume and card.preprocessing.size == (32, 32, 32)

    assert main(["predict", str(tmp_path / "cls"), str(tmp_path / "data" / "volumes"),
                 str(tmp_path / "data" / "volumes.csv"), "--out", str(tmp_path / "p.csv")]) == 1  # the CSV: an error row
    rows = pd.read_csv(tmp_path / "p.csv")
    assert len(rows) == 19 and set(rows["predicted"].dropna()) <= {"solid", "shell", "multiple"}
    assert rows["error"].dropna().tolist() == ["not a NIfTI file (.nii or .nii.gz)"]

    assert main(["evaluate", str(tmp_path / "cls"), "--data", str(table), "--bootstrap", "0"]) == 0
    assert "Written to" in capsys.readouterr().out
    assert (tmp_path / "cls" / "evaluations" / "volumes-own-val" / "metrics.json").is_file()

    assert main(["train", "--data", str(table), "--model", "tiny_unet3d", "--out", str(tmp_path / "seg"),
                 "--set", "volume.size=[16,16,16]", "--set", "volume.spacing=[3,3,3]",
                 "--volume-normalisation", "percentile", "--no-volume-flips", *VOLUME_RUN]) == 0
    assert "task segmentation, volumes" in capsys.readouterr().out
    pre = read_card(tmp_path / "seg").preprocessing
    assert (pre.size, pre.spacing, pre.normalisation) == ((16, 16, 16), (3.0, 3.0, 3.0), "percentile")
    assert read_card(tmp_path / "seg").training.config["volume"]["flips_and_turns"] is False
    assert main(["predict", str(tmp_path / "seg"), str(tmp_path / "data" / "volumes" / "vol_0000.nii.gz"),
                 "--out", str(tmp_path / "seg.csv")]) == 0
    assert main(["evaluate", str(tmp_path / "seg"), "--data", str(table)]) == 0
    assert "Dice" in capsys.readouterr().out
    seg = pd.read_csv(tmp_path / "seg.csv")
    assert seg.loc[0, "mask"].endswith("vol_0000_mask.nii.gz") and (tmp_path / "masks" / "vol_0000_mask.nii.gz").is_file()


def test_a_2d_model_on_volumes_is_refused_with_the_3d_models(tmp_path, capsys):
    table = write_synthetic_volumes(tmp_path / "data", per_class=1, seed=0)
    assert main(["train", "--data", str(table), "--model", "tiny_cnn", "--out", str(tmp_path / "x"), *VOLUME_RUN]) == 2
    assert "tiny_cnn is a 2D model for images; training on volumes" in capsys.readouterr().err
