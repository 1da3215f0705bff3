"""Suspected label errors from out-of-fold probabilities (confident learning, Northcutt et al. 2021).

    embeddings -> K-fold logistic regression (grouped by lesion / patient) -> out-of-fold probabilities
               -> per-class thresholds -> images confidently of another class, ranked by label quality

Why this classifier: on 2 cores a fine-tuned network per fold would take hours; a logistic
regression on fixed embeddings takes seconds per fold and is well calibrated enough for ranking.
The embeddings are standardised and reduced to ``COMPONENTS`` principal components inside each
fold (fitted on that fold's training rows only), which keeps a 5-fold fit of 6,000 images at
1,280 dimensions to well under a minute here. Folds are grouped, so that another image of the
same lesion never vouches for a label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOLDS = 5
COMPONENTS = 128  # principal components of the standardised embeddings fed to the classifier


@dataclass
class LabelQuality:
    """Per image: the out-of-fold probabilities, the label-quality score and the verdict."""

    probabilities: np.ndarray  # N x C, out of fold
    targets: np.ndarray  # N, the given labels (class indices)
    thresholds: np.ndarray  # C: mean self-confidence of each class
    scores: np.ndarray  # N: self-confidence p[given label]; low = suspect
    margins: np.ndarray  # N: p[given] - max p[other], the normalized margin (in [-1, 1])
    suspected: np.ndarray  # N bool: confidently another class (off the confident joint's diagonal)
    likely: np.ndarray  # N: the class the image confidently belongs to (its given one where none)


def out_of_fold_probabilities(features: np.ndarray, targets: np.ndarray, num_classes: int,
                              groups: np.ndarray | None = None, folds: int = FOLDS,
                              seed: int = 0) -> np.ndarray:
    """Each image's class probabilities from a model that never saw it (nor, with ``groups``, any
    image of its group): standardise -> PCA -> multinomial logistic regression, per fold."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(targets)
    counts = np.bincount(y, minlength=num_classes)
    folds = int(max(2, min(folds, counts[counts > 0].min()))) if counts[counts > 0].min() >= 2 else 2
    if groups is not None:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups)
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, _stratifiable(y))
    probs = np.zeros((len(y), num_classes))
    for fit_rows, held in splits:
        components = min(COMPONENTS, x.shape[1], len(fit_rows) - 1)
        model = make_pipeline(StandardScaler(), PCA(components, random_state=seed),
                              LogisticRegression(max_iter=1000, C=0.1))
        model.fit(x[fit_rows], y[fit_rows])
        p = model.predict_proba(x[held])
        probs[np.ix_(held, model.classes_)] = p
    return probs


def _stratifiable(y: np.ndarray) -> np.ndarray:
    """Classes with a single image cannot be stratified: they join the largest class for the split."""
    values, counts = np.unique(y, return_counts=True)
    rare = values[counts < 2]
    return np.where(np.isin(y, rare), values[counts.argmax()], y)


def find_label_issues(probabilities: np.ndarray, targets: np.ndarray) -> LabelQuality:
    """Confident learning: class j's threshold t_j is the mean probability of j over the images
    labelled j; an image labelled i is suspected when some other class j has p_j >= t_j, and it is
    then counted as the above-threshold class it is likeliest to be (the confident joint's off-diagonal)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets)
    n, c = p.shape
    thresholds = np.array([p[y == j, j].mean() if (y == j).any() else 1.0 for j in range(c)])
    above = p >= thresholds[None, :]
    candidates = np.where(above, p, -np.inf)
    likely = np.where(above.any(axis=1), candidates.argmax(axis=1), y)
    suspected = likely != y
    scores = p[np.arange(n), y]
    other = p.copy()
    other[np.arange(n), y] = -np.inf
    margins = scores - other.max(axis=1)
    return LabelQuality(p, y, thresholds, scores, margins, suspected, likely)
