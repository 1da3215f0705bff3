"""The ISIC metric set against the challenge's own scoring package (the oracle), to 1e-6."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lesionlens.evaluation.isic import PER_CLASS, isic_scores, partial_auc_above_sensitivity

oracle = pytest.importorskip("isic_challenge_scoring.classification")

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
ORACLE_NAMES = {"f1": "dice"}


def _oracle(y, probs, classes):
    n = len(y)
    truth = pd.DataFrame(np.eye(len(classes))[y], columns=classes)
    pred = pd.DataFrame(probs, columns=classes)
    weights = pd.DataFrame({"score_weight": np.ones(n), "validation_weight": np.ones(n)})
    return oracle.ClassificationScore(truth, pred, weights, oracle.ClassificationMetric.BALANCED_ACCURACY)


def _cases():
    rng = np.random.default_rng(0)
    # a realistic imbalanced 7-class case: informative, over-confident probabilities
    y = rng.choice(7, size=600, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])
    logits = rng.normal(0, 1, (600, 7)) + 2.5 * np.eye(7)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    yield "informative", y, probs
    # pure noise, three classes
    y3 = rng.integers(0, 3, 90)
    yield "noise", y3, rng.dirichlet([1, 1, 1], 90)
    # ties at the top and probabilities exactly 0.5
    yt = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    pt = np.array([[0.5, 0.5, 0.0], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.4, 0.3, 0.3],
                   [0.3, 0.4, 0.3], [0.5, 0.0, 0.5], [0.6, 0.2, 0.2], [0.0, 1.0, 0.0]])
    yield "ties", yt, pt


@pytest.mark.parametrize("name, y, probs", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_same_numbers_as_the_challenge_scorer(name, y, probs):
    classes = CLASSES[: probs.shape[1]]
    ours = isic_scores(y, probs, classes)
    theirs = _oracle(y, probs, classes)
    for c in classes:
        for m in PER_CLASS:
            assert ours["per_class"][c][m] == pytest.approx(theirs.per_category.loc[c, ORACLE_NAMES.get(m, m)], abs=1e-6), (c, m)
    for m in PER_CLASS:
        assert ours["macro_average"][m] == pytest.approx(theirs.macro_average[ORACLE_NAMES.get(m, m)], abs=1e-6), m
    assert ours["balanced_accuracy"] == pytest.approx(theirs.aggregate["balanced_accuracy"], abs=1e-6)


def test_weighted_average_by_support_by_hand():
    y = np.array([0, 0, 0, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    s = isic_scores(y, probs, ["a", "b"])
    # sensitivity: a 2/3, b 1/1 -> weighted (3 * 2/3 + 1 * 1) / 4 = 0.75
    assert s["weighted_average"]["sensitivity"] == pytest.approx(0.75)
    assert s["macro_average"]["sensitivity"] == pytest.approx((2 / 3 + 1) / 2)


def test_partial_auc_of_a_perfect_and_a_random_ranking():
    y = np.array([0, 0, 1, 1])
    assert partial_auc_above_sensitivity(y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    yr = rng.integers(0, 2, 20000)
    # a random score's ROC is the diagonal: under it, from fpr 0.8 to 1, the area is (1 - 0.8^2) / 2
    assert partial_auc_above_sensitivity(yr, rng.random(20000)) == pytest.approx(0.18, abs=0.01)


def test_one_diagnosis_against_the_rest_by_its_name_or_its_ham10000_code():
    from lesionlens.evaluation.result import class_vs_rest

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]])
    y_true = np.array([0, 2, 1])
    isic = ["melanoma", "nevus", "seborrheic_keratosis"]
    truth, score = class_vs_rest(isic, y_true, probs, "bkl")
    assert truth.tolist() == [False, True, False] and score.tolist() == [0.1, 0.6, 0.3]
    assert class_vs_rest(isic, y_true, probs, "melanoma")[0].tolist() == [True, False, False]
    assert class_vs_rest(["akiec", "bkl", "mel"], y_true, probs, "mel")[1].tolist() == [0.1, 0.6, 0.3]
    with pytest.raises(ValueError, match="no class 'vasc'"):
        class_vs_rest(isic, y_true, probs, "vasc")
