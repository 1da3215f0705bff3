"""Confident learning on synthetic features: flipped labels are found and ranked first."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from lesionlens.quality.labels import find_label_issues, out_of_fold_probabilities


def _features(n_per_class=(300, 120, 60), dim=32, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2.0, (len(n_per_class), dim))
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    x = centres[y] + rng.normal(0, 1.0, (len(y), dim))
    return x, y


def test_flipped_labels_are_suspected_and_score_low():
    x, y = _features()
    rng = np.random.default_rng(1)
    flipped = np.zeros(len(y), dtype=bool)
    noisy = y.copy()
    for c in range(3):  # 5% of every class, rare classes included, to another class
        members = np.flatnonzero(y == c)
        pick = rng.choice(members, max(1, len(members) // 20), replace=False)
        noisy[pick] = (c + 1 + rng.integers(0, 2, len(pick))) % 3
        flipped[pick] = True
    probs = out_of_fold_probabilities(x, noisy, 3, seed=0)
    quality = find_label_issues(probs, noisy)
    assert roc_auc_score(flipped, -quality.scores) > 0.95
    assert quality.suspected[flipped].mean() > 0.7  # most flips are caught
    assert quality.suspected[~flipped].mean() < 0.05  # few clean images are accused
    assert (quality.likely[flipped & quality.suspected] == y[flipped & quality.suspected]).mean() > 0.9


def test_thresholds_are_mean_self_confidence_per_class():
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 0, 1, 1])
    q = find_label_issues(probs, y)
    assert np.allclose(q.thresholds, [0.8, 0.6])
    # image 3 is labelled 1 with p1 0.4 < 0.6, and p0 0.6 < 0.8: not confidently anything else
    assert q.suspected.tolist() == [False, False, False, False]
    q = find_label_issues(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.85, 0.15]]), y)
    assert q.suspected.tolist() == [False, False, False, True] and q.likely[3] == 0
    assert np.allclose(q.margins, [0.8, 0.4, 0.6, -0.7])


def test_folds_keep_groups_together():
    x, y = _features((40, 40), dim=8)
    groups = np.repeat(np.arange(40), 2)  # pairs of identical images in one group
    x[1::2] = x[::2]
    probs = out_of_fold_probabilities(x, y, 2, groups=groups)
    assert probs.shape == (80, 2) and np.allclose(probs.sum(axis=1), 1)
