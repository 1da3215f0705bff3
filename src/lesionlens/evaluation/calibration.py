"""Can the probabilities be trusted? Expected calibration error, Brier score, reliability bins and
temperature scaling (Guo et al. 2017, "On calibration of modern neural networks").

Temperature scaling divides every logit by one number T fitted on validation data by minimising
the negative log-likelihood. It changes no argmax prediction (and, with two classes, no AUC), only
how confident the probabilities are: T > 1 softens an over-confident model. With more classes a
class's one-vs-rest ranking can move slightly, so thresholds are chosen after the temperature.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE: the gap between confidence and accuracy, averaged over equal-width confidence
    bins weighted by their share of images (15 bins, as in Guo et al.)."""
    table = reliability_bins(probs, y_true, bins)
    n = table["count"].sum()
    if n == 0:
        return float("nan")
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float((gaps * table["count"][filled]).sum() / n)


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: its edges, the number of images, their mean confidence and their accuracy
    (NaN for an empty bin)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin k holds confidences in (edges[k], edges[k+1]]; a confidence of exactly 0 goes to bin 0
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, minlength=bins) / count
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / count
    return {"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": mean_conf, "accuracy": accuracy}


def brier_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multiclass Brier score: mean over images of the squared distance between the probability
    vector and the one-hot truth (0 is perfect, 2 the worst)."""
    onehot = np.eye(probs.shape[1])[np.asarray(y_true)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    logp = log_softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return float(-logp[np.arange(len(y_true)), y_true].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of ``softmax(logits / T)`` (searched on log T,
    where the NLL is smooth and unimodal in practice)."""
    y = np.asarray(y_true)
    if len(y) == 0:
        raise ValueError("cannot fit a temperature on no images")
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, y, float(np.exp(log_t))),
                             bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-5})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class CalibrationReport:
    """How calibrated a model's probabilities are on some images, before and after a temperature."""

    temperature: float
    n_images: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    brier_before: float
    brier_after: float
    bins: int = 15

    def to_dict(self) -> dict:
        return asdict(self)


def calibration_report(logits: np.ndarray, y_true: np.ndarray, temperature: float, bins: int = 15) -> CalibrationReport:
    """Figures at temperature 1 (the raw softmax) and at ``temperature``."""
    y = np.asarray(y_true)
    before, after = softmax(logits, axis=1), softmax(np.asarray(logits, np.float64) / temperature, axis=1)
    return CalibrationReport(
        float(temperature), len(y),
        negative_log_likelihood(logits, y), negative_log_likelihood(logits, y, temperature),
        expected_calibration_error(before, y, bins), expected_calibration_error(after, y, bins),
        brier_score(before, y), brier_score(after, y), bins,
    )
