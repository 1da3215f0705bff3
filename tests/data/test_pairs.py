"""Image / mask tables for segmentation: the three layouts, and every missing or bad mask named by
file under the run's bad-input policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import lesion_image, save, save_mask, write_image, write_lesion_pairs
from PIL import Image

from lesionlens.data.images import Preprocessing
from lesionlens.data.load import prepare
from lesionlens.data.pairs import LESION, aligned_masks, attach_masks, load_masks, read_mask_table
from lesionlens.data.table import DataError

PRE = Preprocessing(image_size=24)


def _load(path, masks=None, **kwargs):
    table, folders = read_mask_table(path, **kwargs)
    table = attach_masks(table, [*(masks or []), *folders])
    return table, load_masks(table, PRE)


def test_folder_pair_matches_by_stem_and_aligns_masks_with_images(tmp_path):
    write_lesion_pairs(tmp_path, n=6, size=48)
    table, masks = _load(tmp_path)
    assert table.classes == [LESION] and len(table) == 6 and not table.issues
    data = prepare(table, PRE, progress=False)
    stacked = aligned_masks(data.table, masks)
    assert stacked.shape == (6, 24, 24) and stacked.dtype == bool
    # the mask sits on the dark lesion of its own image, pixel for pixel
    images = data.images.array[data.table.frame["cache_row"]]
    darkness = images.mean(axis=3) < 130
    assert (darkness == stacked).mean() > 0.95


def test_csv_with_a_mask_column_labels_optional(tmp_path):
    rows = []
    for i, label in enumerate(["melanoma", "nevus", "nevus"]):
        image, mask = lesion_image(i, 32)
        save(image, tmp_path / "images" / f"im{i}.jpg")
        save_mask(mask, tmp_path / "masks" / f"seg{i}.png")
        rows.append({"image": f"im{i}", "mask": f"seg{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "labelled.csv", index=False)
    table, masks = _load(tmp_path / "labelled.csv")
    assert table.classes == ["melanoma", "nevus"] and set(masks) == {"im0", "im1", "im2"}
    pd.DataFrame(rows).drop(columns="label").to_csv(tmp_path / "masks_only.csv", index=False)
    table, _ = _load(tmp_path / "masks_only.csv")
    assert table.classes == [LESION] and not table.issues


def test_isic2017_layout_and_a_masks_folder_for_any_layout(tmp_path):
    root = tmp_path / "isic"
    for part, ids in (("Training", (0, 1)), ("Validation", (2,))):
        rows = []
        for i in ids:
            image, mask = lesion_image(i, 32)
            save(image, root / f"ISIC-2017_{part}_Data" / f"ISIC_{i:07d}.jpg")
            save_mask(mask, root / f"ISIC-2017_{part}_Part1_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
            rows.append({"image_id": f"ISIC_{i:07d}", "melanoma": float(i == 0), "seborrheic_keratosis": float(i == 1)})
        pd.DataFrame(rows).to_csv(root / f"ISIC-2017_{part}_Part3_GroundTruth.csv", index=False)
    table, masks = _load(root)
    assert len(masks) == 3 and set(table.frame["partition"]) == {"train", "val"} and not table.issues
    # class folders with their masks somewhere else (--masks)
    for c in ("a", "b"):
        write_image(tmp_path / "classes" / c / f"{c}1.jpg", size=32)
        save_mask(np.ones((32, 32), bool), tmp_path / "elsewhere" / f"{c}1.png")
    table, masks = _load(tmp_path / "classes", masks=[tmp_path / "elsewhere"])
    assert table.classes == ["a", "b"] and len(masks) == 2


def test_every_missing_or_bad_mask_is_named_and_skip_drops_only_those(tmp_path):
    write_lesion_pairs(tmp_path, n=5, size=32)
    (tmp_path / "masks" / "case_001_mask.png").unlink()
    Image.fromarray(np.full((32, 32), 128, np.uint8), "L").save(tmp_path / "masks" / "case_002_mask.png")
    Image.fromarray(np.zeros((20, 32), np.uint8), "L").save(tmp_path / "masks" / "case_003_mask.png")
    table, masks = _load(tmp_path)
    with pytest.raises(DataError) as e:
        prepare(table, PRE, "stop", progress=False)
    text = str(e.value)
    assert "images/case_001.jpg: case_001: no lesion mask (looked in" in text
    assert "case_002: mask case_002_mask.png: not a binary mask: values 128" in text
    assert "case_003: mask case_003_mask.png: the mask is 32x20 but its image is 32x32" in text
    table, masks = _load(tmp_path)
    data = prepare(table, PRE, "skip", report=tmp_path / "issues.csv", progress=False)
    assert list(data.table.frame["image_id"]) == ["case_000", "case_004"]
    assert aligned_masks(data.table, masks).shape == (2, 24, 24)
    assert len(pd.read_csv(tmp_path / "issues.csv")) == 3
