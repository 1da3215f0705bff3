"""The ISIC challenge metric set, with the challenge's own definitions.

The ISIC 2018/2019 scoring (``isic-challenge-scoring``, used as the test oracle) differs from the
course's argmax confusion matrix in two deliberate ways, reproduced here exactly:

- a class's binary decision is its own probability above 0.5 (not the argmax), so a case can be
  positive for no class or for several;
- a ratio with a zero denominator (e.g. sensitivity of a class absent from the data) scores 1.0.

Per class: accuracy, sensitivity, specificity, F1 (the challenge calls it dice), PPV, NPV, ROC AUC,
partial AUC above 80% sensitivity (raw area under that part of the curve, not McClish-normalised) and average precision; their
macro and support-weighted averages; and the ranking metric, balanced multiclass accuracy (mean
recall of the argmax decision, ties counted as wrong).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve
from sklearn.metrics import auc as trapezoid_area

PER_CLASS = ("accuracy", "sensitivity", "specificity", "f1", "ppv", "npv", "auc", "auc_sens_80", "ap")


def _freebie(num: float, den: float) -> float:
    return num / den if den else 1.0


def partial_auc_above_sensitivity(y_true: np.ndarray, score: np.ndarray, sensitivity: float = 0.8) -> float:
    """Area under the part of the ROC curve where sensitivity >= ``sensitivity``, measured from
    zero sensitivity: 1.0 for a perfect ranking, (1 - 0.8^2) / 2 = 0.18 for a random one at 0.8."""
    fpr, tpr, _ = roc_curve(y_true, score, drop_intermediate=False)
    i = int(tpr.searchsorted(sensitivity, side="left"))
    fpr_at = np.interp(sensitivity, tpr[i - 1:i + 1], fpr[i - 1:i + 1])
    return float(trapezoid_area(np.insert(fpr[i:], 0, fpr_at), np.insert(tpr[i:], 0, sensitivity)))


def class_scores(y_true: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The challenge's binary figures for one class: truth is bool, score its probability."""
    t = np.asarray(y_true, bool)
    p = np.asarray(score) > 0.5
    tp, tn = float((t & p).sum()), float((~t & ~p).sum())
    fp, fn = float((~t & p).sum()), float((t & ~p).sum())
    both = t.any() and not t.all()
    return {
        "accuracy": (tp + tn) / (tp + tn + fp + fn),
        "sensitivity": _freebie(tp, tp + fn),
        "specificity": _freebie(tn, tn + fp),
        "f1": _freebie(2 * tp, 2 * tp + fp + fn),
        "ppv": _freebie(tp, tp + fp),
        "npv": _freebie(tn, tn + fn),
        "auc": float(roc_auc_score(t, score)) if both else float("nan"),
        "auc_sens_80": partial_auc_above_sensitivity(t, score, 0.8) if both else float("nan"),
        "ap": float(average_precision_score(t, score)) if t.any() else float("nan"),
    }


def balanced_multiclass_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean over the classes present of the share of their cases whose unique top class is right."""
    top = probs.max(axis=1, keepdims=True)
    unique = (probs == top).sum(axis=1) == 1
    pred = np.where(unique, probs.argmax(axis=1), -1)
    recalls = [np.mean(pred[y_true == k] == k) for k in np.unique(y_true)]
    return float(np.mean(recalls))


def isic_scores(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Every figure of the challenge: ``per_class``, ``macro_average``, ``weighted_average`` and
    ``balanced_accuracy``. ``y_true`` indexes ``classes`` (the columns of ``probs``)."""
    y_true = np.asarray(y_true)
    per_class = {c: class_scores(y_true == k, probs[:, k]) for k, c in enumerate(classes)}
    support = np.bincount(y_true, minlength=len(classes)).astype(float)
    macro, weighted = {}, {}
    for m in PER_CLASS:
        values = np.array([per_class[c][m] for c in classes])
        macro[m] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        defined = np.isfinite(values) & (support > 0)
        weighted[m] = float(np.average(values[defined], weights=support[defined])) if defined.any() else float("nan")
    return {
        "definitions": "ISIC challenge: per-class decision at probability > 0.5; undefined ratios score 1.0",
        "per_class": per_class,
        "macro_average": macro,
        "weighted_average": weighted,
        "balanced_accuracy": balanced_multiclass_accuracy(y_true, probs),
    }
