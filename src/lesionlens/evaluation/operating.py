"""Where should the model operate? Choosing the malignant / melanoma threshold on validation data.

Three criteria, as clinical studies use them:
- ``sensitivity``: the highest threshold whose sensitivity reaches the target (so specificity is as
  high as it can be there). The default target, 0.866, is the dermatologists' mean sensitivity in
  Haenssle et al. 2018 (Annals of Oncology), so the model can be compared at the same point;
- ``specificity``: the lowest threshold whose specificity reaches the target;
- ``youden``: the threshold that maximises sensitivity + specificity - 1.
A case is positive when its score (the summed probabilities of the view's positive classes) is at
least the threshold. The threshold lies halfway between the validation score that meets the target
and the next lower one, so on validation data the requested sensitivity or specificity is met
exactly, and a rounding difference in how the scores are recomputed cannot flip a case.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from lesionlens.config import Criterion, choices
from lesionlens.decision import OperatingPoint
from lesionlens.evaluation.metrics import binary_stats

DERMATOLOGIST_SENSITIVITY = 0.866  # Haenssle et al. 2018: 86.6% sensitivity at 71.3% specificity
DERMATOLOGIST_SPECIFICITY = 0.713


def choose_operating_point(view: str, y_true: np.ndarray, score: np.ndarray, criterion: str = "sensitivity",
                           target: float | None = DERMATOLOGIST_SENSITIVITY) -> OperatingPoint:
    """The threshold on ``score`` that meets ``criterion`` on these (validation) cases."""
    t = np.asarray(y_true, bool)
    if t.all() or not t.any():
        raise ValueError(f"{view}: choosing a threshold needs positive and negative cases, got {int(t.sum())} "
                         f"positive of {len(t)}")
    if criterion not in choices(Criterion):
        raise ValueError(f"unknown operating-point criterion {criterion!r}; choose one of {choices(Criterion)}")
    if criterion != "youden" and not (target is not None and 0.0 < target <= 1.0):
        raise ValueError(f"a {criterion} target must be in (0, 1], got {target}")
    fpr, tpr, thresholds = roc_curve(t, score, drop_intermediate=False)
    finite = np.isfinite(thresholds)  # scikit-learn's first threshold is +inf: nobody positive
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if criterion == "sensitivity":
        i = int(np.flatnonzero(tpr >= target - 1e-12)[0])  # thresholds fall as tpr rises: first = highest
    elif criterion == "specificity":
        i = int(np.flatnonzero(1 - fpr >= target - 1e-12)[-1])
    else:
        i, target = int(np.argmax(tpr - fpr)), None
    # any threshold in (next lower score, thresholds[i]] makes the same decisions here: take the middle
    threshold = (thresholds[i] + thresholds[i + 1]) / 2 if i + 1 < len(thresholds) else thresholds[i]
    return OperatingPoint(view, float(threshold), criterion, target)


def rates_at(y_true: np.ndarray, score: np.ndarray, threshold: float) -> tuple[float, float]:
    """(sensitivity, specificity) of the decision ``score >= threshold``."""
    stats = binary_stats(y_true, np.asarray(score) >= threshold)
    return stats.sensitivity, stats.specificity
