"""Threshold selection meets the requested sensitivity / specificity on the data it is chosen on."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.evaluation.operating import choose_operating_point, rates_at


@pytest.fixture
def validation():
    rng = np.random.default_rng(0)
    y = rng.random(400) < 0.25
    return y, rng.normal(np.where(y, 1.2, 0.0), 1.0)


@pytest.mark.parametrize("target", [0.5, 0.866, 0.95, 1.0])
def test_sensitivity_target_is_reached_with_the_best_specificity(validation, target):
    y, score = validation
    point = choose_operating_point("melanoma", y, score, "sensitivity", target)
    sens, spec = rates_at(y, score, point.threshold)
    assert sens >= target
    # it decides like the lowest score above it, and no higher threshold reaches the target
    above = np.unique(score[score >= point.threshold])
    assert rates_at(y, score, above[0]) == (sens, spec)
    if len(above) > 1:
        assert rates_at(y, score, above[1])[0] < target
    assert point.criterion == "sensitivity" and point.target == target


def test_hand_computed_threshold():
    y = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    score = np.array([0.9, 0.6, 0.3, 0.7, 0.4, 0.2, 0.1])
    # halfway between the score that meets the target and the next lower score
    assert choose_operating_point("m", y, score, "sensitivity", 0.6).threshold == pytest.approx(0.5)  # 2 of 3
    assert choose_operating_point("m", y, score, "sensitivity", 0.866).threshold == pytest.approx(0.25)  # 3 of 3
    assert choose_operating_point("m", y, score, "specificity", 0.75).threshold == pytest.approx(0.5)  # 3 of 4 below
    assert choose_operating_point("m", y, score, "sensitivity", 1.0).threshold == pytest.approx(0.25)
    assert rates_at(y, score, 0.3) == (1.0, 0.5)


def test_specificity_target_is_reached_with_the_best_sensitivity(validation):
    y, score = validation
    point = choose_operating_point("malignant", y, score, "specificity", 0.9)
    sens, spec = rates_at(y, score, point.threshold)
    assert spec >= 0.9
    lower = np.unique(score[score < point.threshold])
    if len(lower):
        assert rates_at(y, score, lower[-1])[1] < 0.9
    assert point.threshold > lower[-1] and point.threshold < score[score >= point.threshold].min() + 1e-12


def test_youden_maximises_sensitivity_plus_specificity(validation):
    y, score = validation
    point = choose_operating_point("malignant", y, score, "youden")
    best = max(sum(rates_at(y, score, t)) for t in np.unique(score))
    assert sum(rates_at(y, score, point.threshold)) == pytest.approx(best)
    assert point.target is None


def test_one_sided_data_and_bad_targets_are_clear_errors():
    with pytest.raises(ValueError, match="positive and negative"):
        choose_operating_point("melanoma", np.zeros(5, bool), np.arange(5.0))
    with pytest.raises(ValueError, match="target"):
        choose_operating_point("melanoma", np.array([0, 1], bool), np.array([0.1, 0.9]), "sensitivity", 1.5)
    with pytest.raises(ValueError, match="criterion"):
        choose_operating_point("melanoma", np.array([0, 1], bool), np.array([0.1, 0.9]), "accuracy")
