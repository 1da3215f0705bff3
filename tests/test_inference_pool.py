"""Predicting in several processes (`lesionlens predict / evaluate --devices N`): the same rows, in
the same order, with the same probabilities as one process; unreadable files still listed; bundles
that cannot be split among processes refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.bundle.card import read_card
from lesionlens.cli import main
from lesionlens.evaluation.bundles import evaluate_bundle
from lesionlens.predict import predict_paths


def test_two_processes_predict_the_files_one_process_predicts(exported_bundle, tmp_path):
    folder = exported_bundle.parent / "images"
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    one = predict_paths(exported_bundle, [folder, broken], tta="flips")
    two = predict_paths(exported_bundle, [folder, broken], tta="flips", processes=2)
    assert len(one) == 37 and [r["path"] for r in two] == [r["path"] for r in one]
    assert [r["error"] for r in two] == [r["error"] for r in one]
    assert two[-1]["path"] == str(broken) and two[-1]["error"]
    classes = read_card(exported_bundle).classes
    for a, b in zip(one[:-1], two[:-1]):
        assert b["predicted"] == a["predicted"]
        np.testing.assert_allclose([b[f"p_{c}"] for c in classes], [a[f"p_{c}"] for c in classes], atol=1e-5)


def test_two_processes_evaluate_as_one_does(exported_bundle, tmp_path):
    card, data = read_card(exported_bundle), exported_bundle.parent / "images"
    one = evaluate_bundle(card, data, tmp_path / "one", split="all", resamples=0, progress=False,
                          allow_leakage=True).written.ev
    two = evaluate_bundle(card, data, tmp_path / "two", split="all", resamples=0, progress=False,
                          allow_leakage=True, processes=2).written.ev
    assert two.image_ids == one.image_ids and len(two.y_true) == 36
    np.testing.assert_allclose(two.probs, one.probs, atol=1e-5)
    np.testing.assert_allclose(two.logits, one.logits, atol=1e-4)


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_segmentation_bundle_is_not_split_among_processes(segmentation_bundle, tmp_path, capsys, command):
    images = segmentation_bundle.parent / "pairs" / "images"
    args = [str(images)] if command == "predict" else ["--data", str(segmentation_bundle.parent / "pairs" / "cases.csv")]
    assert main([command, str(segmentation_bundle), *args, "--devices", "2"]) == 2
    assert "segmentation bundle; several processes predict with 2D classification and regression bundles only" \
        in capsys.readouterr().err
