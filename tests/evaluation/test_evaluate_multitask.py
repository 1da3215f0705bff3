"""A multi-task bundle is a classifier for evaluate, predict and the gate (through its class head);
a segmentation-only bundle has no classes, and says so."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.bundle.card import read_card
from lesionlens.evaluation.bundles import evaluate_bundle
from lesionlens.inference import Predictor, load_classifier


def test_a_multitask_bundle_is_evaluated_through_its_class_head(multitask_bundle, tmp_path):
    card = read_card(multitask_bundle)
    cases = multitask_bundle.parent / "pairs" / "cases.csv"
    result = evaluate_bundle(card, cases, tmp_path / "evaluation", progress=False)  # its own data: the validation split
    metrics = result.written.metrics
    # the same validation images as training's own evaluation, and the same ranking of them
    assert metrics["n_images"] == card.validation.n_images
    assert metrics["macro_auc"] == pytest.approx(card.validation.macro_auc, abs=1e-9)


def test_a_multitask_bundle_predicts_classes_from_files(multitask_bundle):
    files = sorted((multitask_bundle.parent / "pairs" / "images").glob("*.jpg"))[:3]
    probabilities, failures = Predictor(multitask_bundle).predict_files(files)
    assert not failures and probabilities.shape == (3, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_a_segmentation_bundle_has_no_classes_to_give(segmentation_bundle):
    with pytest.raises(ValueError, match="no classification head"):
        load_classifier(read_card(segmentation_bundle))
    with pytest.raises(ValueError, match="no classification head"):
        Predictor(segmentation_bundle)
