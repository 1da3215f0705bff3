"""How much two sets of maps agree: Pearson correlation (the server's NumPy CAM against the library's
Grad-CAM, checked by ``lesionlens export``), and Spearman rank correlation and SSIM (the
model-randomisation sanity check, :mod:`lesionlens.explain.sanity`)."""

from __future__ import annotations

import numpy as np


def map_correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps; NaN where either map is constant."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (a * b).sum(axis=1) / denom, np.nan)


def rank_correlations(a: np.ndarray, b: np.ndarray, absolute: bool = True) -> np.ndarray:
    """Spearman rank correlation of each pair of maps (of their absolute values, as Adebayo et al.
    2018 compare them: a map and its negation say the same thing about importance)."""
    from scipy.stats import rankdata

    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    if absolute:
        a, b = np.abs(a), np.abs(b)
    r = map_correlations(rankdata(a, axis=1), rankdata(b, axis=1))
    # A constant map ranks nothing: two constant maps say the same (1), a constant map against a
    # ranked one shares no ranking with it (0). Randomised networks often give all-zero CAMs.
    flat_a, flat_b = np.ptp(a, axis=1) == 0, np.ptp(b, axis=1) == 0
    return np.where(flat_a & flat_b, 1.0, np.where(flat_a | flat_b, 0.0, r))


def structural_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM (scikit-image) of each pair of maps, each min-max scaled to [0, 1] first, as in the
    sanity-check paper's comparison of normalised maps; 1.0 for two constant maps."""
    from skimage.metrics import structural_similarity

    out = np.empty(len(a))
    for i, (x, y) in enumerate(zip(a, b)):
        out[i] = structural_similarity(_unit(x), _unit(y), data_range=1.0)
    return out


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.abs(np.asarray(m, dtype=np.float64))
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else np.zeros_like(m)
