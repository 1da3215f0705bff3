"""Per-volume Dice and Jaccard, checked against counts done by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lesionlens.evaluation.volume_masks import evaluate_volume_masks


def test_dice_and_jaccard_by_hand(tmp_path):
    truth = np.zeros((3, 4, 4, 4), bool)
    predicted = np.zeros_like(truth)
    truth[0, :2] = True  # 32 voxels
    predicted[0, 1:3] = True  # 32 voxels, 16 shared: Dice 32/64, Jaccard 16/48
    truth[1, 0, 0, 0] = True  # a missed single voxel: 0 and 0
    # volume 2: nothing true, nothing predicted: a perfect match
    ev = evaluate_volume_masks(truth, predicted, ["a", "b", "c"], voxel_mm3=2.0)
    assert ev.frame["dice"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    assert ev.frame["jaccard"].tolist() == pytest.approx([1 / 3, 0.0, 1.0])
    assert ev.dice == pytest.approx(0.5) and ev.jaccard == pytest.approx(4 / 9)
    assert ev.frame["true_mm3"].tolist() == [64.0, 2.0, 0.0]
    summary = ev.summary()
    assert summary["n_volumes"] == 3 and summary["dice_min"] == 0.0
    files = ev.write(tmp_path / "seg")
    assert json.loads(files["metrics"].read_text())["dice"] == 0.5
    with pytest.raises(ValueError, match="N x D x H x W"):
        evaluate_volume_masks(truth[0], predicted[0])
