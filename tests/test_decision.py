"""The decision rule a bundle carries: temperature, clinical views, operating points."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.decision import DecisionRule, OperatingPoint

CLASSES = ["mel", "nv", "bcc"]


def test_plain_softmax_and_argmax_without_calibration_or_operating_points():
    rule = DecisionRule(tuple(CLASSES))
    probs = rule.probabilities(np.array([[1.0, 2.0, 0.0]]))
    e = np.exp([1.0, 2.0, 0.0])
    assert np.allclose(probs, e / e.sum())
    decided = rule.decide(probs)
    assert decided["malignant"]["rule"] == {"criterion": "argmax"}
    assert not decided["malignant"]["positive"][0]  # nv is the top class
    assert decided["malignant"]["score"][0] == pytest.approx(probs[0, 0] + probs[0, 2])


def test_temperature_softens_and_thresholds_decide():
    rule = DecisionRule(tuple(CLASSES), 2.0, (OperatingPoint("melanoma", 0.25, "sensitivity", 0.866),))
    logits = np.array([[0.0, 2.0, 0.0]])
    assert rule.probabilities(logits)[0, 1] < DecisionRule(tuple(CLASSES)).probabilities(logits)[0, 1]
    decided = rule.decide(rule.probabilities(logits))
    assert decided["melanoma"]["score"][0] == pytest.approx(np.exp(0) / (2 + np.exp(1)))  # 0.212
    assert not decided["melanoma"]["positive"][0]
    assert decided["melanoma"]["rule"]["target"] == 0.866
    assert rule.decide(rule.probabilities(np.array([[1.0, 1.0, 0.0]])))["melanoma"]["positive"][0]


def test_views_only_where_the_classes_define_them():
    assert DecisionRule(("cat", "dog")).decide(np.array([[0.4, 0.6]])) == {}
    assert set(DecisionRule(("benign", "malignant")).decide(np.array([[0.4, 0.6]]))) == {"malignant"}
