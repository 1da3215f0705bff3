"""Calibration figures by hand, and temperature scaling on a deliberately over-confident model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from lesionlens.evaluation.calibration import (brier_score, calibration_report, expected_calibration_error,
                                               fit_temperature, reliability_bins)
from lesionlens.evaluation.result import Evaluation
from lesionlens.decision import DecisionRule


def test_ece_and_brier_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    # 2 bins: (0, 0.5] holds nobody (top-class confidences are all > 0.5); (0.5, 1] holds all four:
    # mean confidence (0.9 + 0.8 + 0.7 + 0.6) / 4 = 0.75, accuracy 3/4 -> ECE 0
    assert expected_calibration_error(probs, y, bins=2) == pytest.approx(0.0)
    # 5 bins of 0.2: (0.8, 1.0] has 0.9 (right); (0.6, 0.8] has 0.8 (wrong) and 0.7 (right); (0.4, 0.6] has 0.6 (right)
    # ECE = 1/4 |1 - 0.9| + 2/4 |0.5 - 0.75| + 1/4 |1 - 0.6| = 0.025 + 0.125 + 0.1 = 0.25
    assert expected_calibration_error(probs, y, bins=5) == pytest.approx(0.25)
    table = reliability_bins(probs, y, bins=5)
    assert table["count"].tolist() == [0, 0, 1, 2, 1]
    # Brier: (0.01+0.01) + (0.64+0.64) + (0.09+0.09) + (0.16+0.16) = 1.8, over 4 images
    assert brier_score(probs, y) == pytest.approx(0.45)


def overconfident(seed: int = 0, n: int = 3000, sharpen: float = 4.0):
    """Labels drawn from softmax(z) (so z is calibrated), reported as logits sharpen * z."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.2, (n, 4))
    y = np.array([rng.choice(4, p=p) for p in softmax(z, axis=1)])
    return sharpen * z, y


def test_temperature_scaling_fixes_an_overconfident_model():
    logits, y = overconfident()
    t = fit_temperature(logits, y)
    assert t == pytest.approx(4.0, rel=0.15)
    report = calibration_report(logits, y, t)
    assert report.ece_before > 0.15
    assert report.ece_after < report.ece_before / 3
    assert report.nll_after < report.nll_before and report.brier_after < report.brier_before


def test_a_calibrated_model_keeps_a_temperature_near_one():
    logits, y = overconfident(seed=1, sharpen=1.0)
    assert fit_temperature(logits, y) == pytest.approx(1.0, abs=0.12)


def test_temperature_changes_no_decision_and_no_binary_auc():
    logits, y = overconfident(seed=2, n=500)
    ev = Evaluation(["a", "b", "c", "d"], y, softmax(logits, axis=1), logits=logits)
    scaled = ev.with_rule(DecisionRule(tuple(ev.classes), fit_temperature(logits, y)))
    assert (scaled.y_pred == ev.y_pred).all() and scaled.temperature != 1.0
    # with two classes p = sigmoid(logit difference / T) keeps its ranking, so the AUC is unchanged;
    # with more, a class's one-vs-rest ranking (and so its AUC) can move slightly
    two = Evaluation(["a", "b"], (y > 1).astype(int), softmax(logits[:, :2], axis=1), logits=logits[:, :2])
    np.testing.assert_allclose(two.with_rule(DecisionRule(tuple(two.classes), 2.5)).class_auc, two.class_auc)
