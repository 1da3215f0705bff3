"""Leakage across partitions: by group and by copy; train refuses a leaky split unless allowed, and
the card records it; evaluate refuses the bundle's own training images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import save, textured
from PIL import Image

from lesionlens.data.load import read_table
from lesionlens.data.table import make_table
from lesionlens.quality.leakage import LeakageError, check_split, group_leaks

CLASSES = ("mel", "nv")


def _table(rows):
    records = [{"image_id": i, "path": f"/x/{i}.jpg", "label": lab, "group": g, "partition": p, "source": "t.csv",
                "row": k + 2} for k, (i, lab, g, p) in enumerate(rows)]
    return make_table(records, list(CLASSES), "csv", "t.csv")


def test_a_group_in_two_partitions_is_a_leak():
    table = _table([("a", "mel", "L1", "train"), ("b", "mel", "L1", "val"), ("c", "nv", "L2", "train"),
                    ("d", "nv", "L2", "train"), ("e", "nv", None, "val")])
    leaks = group_leaks(table)
    assert [(f.a, f.b, f.code) for f in leaks] == [(0, 1, "group")]
    assert "L1" in leaks[0].reason


def _images(n: int, size: int = 64) -> np.ndarray:
    return np.stack([textured(100 + i, size) for i in range(n)])


def _split_table(n: int, partitions: list[str]):
    rows = [(f"i{k}", CLASSES[k % 2], None, partitions[k]) for k in range(n)]
    table = _table(rows)
    table.frame["cache_row"] = np.arange(n)
    return table


def test_copies_across_partitions_are_leaks_and_within_one_are_not():
    images = _images(8)
    images[5] = images[1]  # identical pixels: 1 (train) and 5 (val)
    images[6] = np.asarray(Image.fromarray(images[2]).transpose(Image.Transpose.ROTATE_90))  # 2 train, 6 val
    images[3] = images[0]  # both train: a duplicate, not a leak
    parts = ["train", "train", "train", "train", "val", "val", "val", "val"]
    check = check_split(_split_table(8, parts), images)
    assert sorted((f.a, f.b, f.code) for f in check.findings) == [(1, 5, "exact_copy"), (2, 6, "near_copy")]
    assert check.by_evidence() == {"exact_copy": 1, "near_copy": 1}
    assert any("i1 and i5" in line for line in check.lines)
    assert check_split(_split_table(8, ["train"] * 4 + ["val"] * 4), _images(8)).clean


def _leaky_folder(root):
    """DATA/train|val/<class>/: one validation image is a mirrored copy of a training image."""
    for k in range(12):
        for c, part in ((0, "train"), (1, "train"), (2, "val")):
            if part == "val" and k >= 4:
                continue
            save(textured(1000 + 37 * k + c, 48), root / part / CLASSES[k % 2] / f"{c}_{k}.png")
    mirrored = Image.open(root / "train" / "mel" / "0_0.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    mirrored.save(root / "val" / "mel" / "copy.png")
    return root


def _config(data, tmp_path, **extra):
    from lesionlens.config import load_config

    return load_config(overrides={
        "data.path": str(data), "data.num_workers": 0, "data.cache_dir": str(tmp_path / "cache"),
        "model.name": "tiny_cnn", "model.pretrained": False, "model.image_size": 32,
        "train.epochs": 1, "train.batch_size": 8, "train.warmup_epochs": 0.0, **extra})


def test_train_refuses_a_leaky_split_and_the_override_is_recorded(tmp_path):
    from lesionlens.evaluation.bundles import evaluate_bundle
    from lesionlens.training.fit import train

    data = _leaky_folder(tmp_path / "data")
    with pytest.raises(LeakageError, match=r"0_0 and copy.*near_copy|copy.*altered copies") as e:
        train(_config(data, tmp_path), tmp_path / "refused", progress=False)
    assert "--allow-leakage" in str(e.value)
    assert not (tmp_path / "refused" / "card.json").exists()

    result = train(_config(data, tmp_path, **{"data.allow_leakage": True}), tmp_path / "run", progress=False)
    record = result.card.dataset.leakage
    assert record["allowed"] is True and record["leaks"] == 1 and record["by_evidence"] == {"near_copy": 1}
    split = pd.read_csv(tmp_path / "run" / "split.csv")
    assert split["phash"].str.len().eq(64).all()  # kept for evaluate's check

    # evaluating on the training images themselves is refused, and allowed with the flag
    with pytest.raises(LeakageError, match="training images"):
        evaluate_bundle(result.card, data, tmp_path / "ev", split="train", resamples=0, progress=False)
    ev = evaluate_bundle(result.card, data, tmp_path / "ev", split="train", resamples=0, progress=False,
                         allow_leakage=True)
    assert ev.written.metrics["n_images"] == len(split[split["partition"] == "train"])


def test_a_table_read_from_disk_with_a_shared_lesion_id_leaks(ham_layout):
    table = read_table(ham_layout)
    table.frame["partition"] = "train"
    table.frame.loc[1, "partition"] = "val"  # HAM_mel1 has two images: rows 1 and 2
    leaks = group_leaks(table)
    assert [(f.a, f.b) for f in leaks] == [(1, 2)] and "HAM_mel1 is in val and train" in leaks[0].reason
