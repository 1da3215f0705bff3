"""Bootstrap intervals cover the truth at about the nominal rate; paired tests and DeLong behave."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from lesionlens.evaluation.bootstrap import (auc_rows, confidence_intervals, delong_test, paired_comparison,
                                             stratified_indices)
from lesionlens.evaluation.result import Evaluation


def binormal(rng, n_pos: int, n_neg: int, d: float) -> Evaluation:
    """Two classes whose logit-difference is N(+d/2, 1) for positives and N(-d/2, 1) for negatives:
    true AUC = Phi(d / sqrt 2), true sensitivity = specificity = balanced accuracy = Phi(d / 2)."""
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    score = rng.normal(np.where(y == 1, d / 2, -d / 2), 1.0)
    p = 1 / (1 + np.exp(-score))
    return Evaluation(["benign", "malignant"], y, np.c_[1 - p, p])


def test_stratified_resamples_keep_every_class_count():
    y = np.array([0] * 5 + [1] * 3 + [2] * 9)
    idx = stratified_indices(y, 50, seed=1)
    assert idx.shape == (50, 17)
    assert all((np.bincount(y[row], minlength=3) == [5, 3, 9]).all() for row in idx)


def test_vectorised_auc_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    truth = rng.random((20, 60)) < 0.3
    score = rng.integers(0, 5, (20, 60)).astype(float)  # many ties
    expected = [roc_auc_score(t, s) for t, s in zip(truth, score)]
    np.testing.assert_allclose(auc_rows(truth, score), expected, atol=1e-12)


def test_intervals_cover_the_true_value_at_about_95_percent():
    """300 simulated test sets of 60 positives and 140 negatives. Percentile-bootstrap intervals are
    known to run slightly narrow at this size; we accept 0.90-0.99 coverage (the binomial standard
    error of a 0.95 rate over 300 trials is 0.013, so the band is about 3.5 standard errors wide below)."""
    d = 1.5
    truth = {"malignant_auc": norm.cdf(d / np.sqrt(2)), "balanced_accuracy": norm.cdf(d / 2),
             "malignant_sensitivity": norm.cdf(d / 2), "malignant_specificity": norm.cdf(d / 2)}
    rng = np.random.default_rng(2026)
    hits = {k: 0 for k in truth}
    trials = 300
    for t in range(trials):
        intervals = confidence_intervals(binormal(rng, 60, 140, d), n_resamples=400, seed=t)
        for k, value in truth.items():
            hits[k] += intervals[k].low <= value <= intervals[k].high
    coverage = {k: h / trials for k, h in hits.items()}
    print("coverage", coverage)
    assert all(0.90 <= c <= 0.99 for c in coverage.values()), coverage


def test_interval_brackets_its_estimate_and_is_seeded():
    ev = binormal(np.random.default_rng(0), 50, 150, 1.0)
    a, b = confidence_intervals(ev, 300, seed=7), confidence_intervals(ev, 300, seed=7)
    assert a == b
    for iv in a.values():
        assert iv.low <= iv.estimate <= iv.high
    assert a["malignant_auc"].estimate == pytest.approx(roc_auc_score(ev.y_true, ev.probs[:, 1]))


def test_delong_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(150, bool), np.zeros(350, bool)]
    signal = rng.normal(np.where(y, 1.0, 0.0), 1.0)
    good = signal + rng.normal(0, 0.3, len(y))
    bad = signal + rng.normal(0, 2.0, len(y))
    auc_a, auc_b, z, p, se = delong_test(y, bad, good)
    assert auc_b > auc_a and p < 1e-3 and z > 0
    assert delong_test(y, good, good)[3] == 1.0


def test_delong_standard_error_agrees_with_the_paired_bootstrap():
    rng = np.random.default_rng(5)
    y = np.r_[np.ones(120, bool), np.zeros(280, bool)]
    a = rng.normal(np.where(y, 1.0, 0.0), 1.0)
    b = a + rng.normal(0, 0.8, len(y))
    _, _, _, _, se = delong_test(y, a, b)
    idx = stratified_indices(y.astype(int), 2000, 0)
    diffs = auc_rows(y[idx], b[idx]) - auc_rows(y[idx], a[idx])
    assert se == pytest.approx(diffs.std(), rel=0.15)


def test_paired_comparison_needs_the_same_images():
    rng = np.random.default_rng(0)
    a, b = binormal(rng, 30, 70, 1.0), binormal(rng, 30, 70, 2.0)
    result = paired_comparison(a, b, 300)
    assert result["malignant_auc"].interval.estimate == pytest.approx(result["malignant_auc"].b - result["malignant_auc"].a)
    assert result["malignant_auc_delong"].method == "DeLong"
    shorter = Evaluation(a.classes, a.y_true[:-1], a.probs[:-1])
    with pytest.raises(ValueError, match="same images"):
        paired_comparison(a, shorter)
