"""Classification metrics as the course material and the ISIC challenges define them.

Binary figures come from the four counts (TP, FN, FP, TN); a multiclass confusion matrix gives
one such table per class (that class against the rest). A figure whose denominator is zero is
NaN (reported as null), never a made-up 0 or 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

# The course's reading of an AUC: lower bound, letter, word.
AUC_GRADES = ((0.9, "A", "excellent"), (0.8, "B", "good"), (0.7, "C", "fair"),
              (0.6, "D", "poor"), (0.5, "F", "fail"))


def auc_grade(auc: float) -> str | None:
    """``0.93 -> "A excellent"``; below 0.5 the model ranks worse than chance."""
    if auc is None or math.isnan(auc):
        return None
    for low, letter, word in AUC_GRADES:
        if auc >= low:
            return f"{letter} {word}"
    return "F worse than chance"


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


@dataclass(frozen=True)
class BinaryStats:
    """The 2x2 table of one decision and what clinicians read from it."""

    tp: int
    fn: int
    fp: int
    tn: int

    @property
    def sensitivity(self) -> float:  # recall, true positive rate
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def specificity(self) -> float:  # true negative rate
        return _ratio(self.tn, self.tn + self.fp)

    @property
    def ppv(self) -> float:  # precision
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def npv(self) -> float:
        return _ratio(self.tn, self.tn + self.fn)

    @property
    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.fn + self.fp + self.tn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        for name in ("sensitivity", "specificity", "ppv", "npv", "accuracy", "f1"):
            d[name] = getattr(self, name)
        return d


def binary_stats(y_true: np.ndarray, y_pred: np.ndarray) -> BinaryStats:
    """Counts from boolean truth and decision arrays."""
    t, p = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    return BinaryStats(int((t & p).sum()), int((t & ~p).sum()), int((~t & p).sum()), int((~t & ~p).sum()))


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are the true class, columns the predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return cm


def row_normalised(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total: the diagonal is each class's sensitivity (NaN for empty rows)."""
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, cm / np.maximum(totals, 1), np.nan)


def one_vs_rest(cm: np.ndarray) -> list[BinaryStats]:
    """Class k against all others, for every k."""
    total = cm.sum()
    stats = []
    for k in range(len(cm)):
        tp = cm[k, k]
        fn = cm[k].sum() - tp
        fp = cm[:, k].sum() - tp
        stats.append(BinaryStats(int(tp), int(fn), int(fp), int(total - tp - fn - fp)))
    return stats


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean sensitivity over the classes present in the data: the ISIC 2018 ranking metric."""
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diag(cm)[present] / support[present]))


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one side is present."""
    y = np.asarray(y_true, bool)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, score))


def binary_roc(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) along all thresholds."""
    fpr, tpr, _ = roc_curve(np.asarray(y_true, bool), score)
    return fpr, tpr


def per_class_auc(y_true: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC of each class's probability; NaN for a class absent from (or alone in) the data."""
    return np.array([binary_auc(y_true == k, probs[:, k]) for k in range(probs.shape[1])])


def macro_auc(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes whose AUC is defined."""
    aucs = per_class_auc(y_true, probs)
    return float(np.nanmean(aucs)) if np.isfinite(aucs).any() else float("nan")
