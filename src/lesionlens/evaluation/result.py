"""The result of evaluating a model on labelled images: an object to query, plot and save.

Holds the truth and the predicted probabilities; every figure is computed from them on demand, so
nothing printed can disagree with what is saved.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lesionlens.data.labels import VIEW_CLASSES, binary_membership
from lesionlens.decision import DecisionRule
from lesionlens.evaluation import metrics as M
from lesionlens.evaluation.isic import isic_scores


@dataclass
class BinaryView:
    """A two-sided question asked of a multiclass model, such as malignant vs benign."""

    name: str
    positive_classes: list[str]
    y_true: np.ndarray  # bool
    score: np.ndarray  # summed probability of the positive classes
    y_pred: np.ndarray  # bool: score >= threshold, or (without one) the predicted class is positive
    threshold: float | None = None  # the bundle's operating point for this view, if it has one

    @property
    def stats(self) -> M.BinaryStats:
        return M.binary_stats(self.y_true, self.y_pred)

    @property
    def auc(self) -> float:
        return M.binary_auc(self.y_true, self.score)

    def to_dict(self) -> dict:
        return {
            "positive_classes": self.positive_classes,
            "positives": int(self.y_true.sum()),
            "negatives": int((~self.y_true).sum()),
            "decision": "argmax" if self.threshold is None else f"score >= {self.threshold:.6g}",
            **self.stats.to_dict(),
            "auc": self.auc,
            "auc_grade": M.auc_grade(self.auc),
        }


@dataclass
class Evaluation:
    classes: list[str]  # the model's classes; columns of ``probs``
    y_true: np.ndarray  # index into ``classes``
    probs: np.ndarray  # N x C
    image_ids: list[str] = field(default_factory=list)
    description: str = ""  # what was evaluated (data path, partition)
    # How ``probs`` were made from ``logits`` (temperature) and how the malignant / melanoma views
    # decide (operating points); None: the plain softmax and the argmax class.
    rule: DecisionRule | None = None
    logits: np.ndarray | None = None  # N x C, before temperature: what calibration is fitted on
    rows: np.ndarray | None = None  # each image's row in ``images``
    images: np.ndarray | None = None  # the decoded images (M x H x W x 3 uint8), for galleries
    tta: str = "none"  # test-time augmentation the logits were averaged over

    def __post_init__(self) -> None:
        if self.rule is None:
            self.rule = DecisionRule(tuple(self.classes))

    @property
    def temperature(self) -> float:
        """The probabilities are softmax(logits / temperature)."""
        return self.rule.temperature

    @property
    def operating_points(self) -> dict[str, float]:
        """View -> the threshold on its score."""
        return {p.view: p.threshold for p in self.rule.operating_points}

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def confusion_matrix(self, normalise: bool = False) -> np.ndarray:
        cm = M.confusion_matrix(self.y_true, self.y_pred, len(self.classes))
        return M.row_normalised(cm) if normalise else cm

    @property
    def accuracy(self) -> float:
        return float((self.y_true == self.y_pred).mean()) if len(self.y_true) else float("nan")

    @property
    def balanced_accuracy(self) -> float:
        return M.balanced_accuracy(self.confusion_matrix())

    @property
    def class_auc(self) -> np.ndarray:
        return M.per_class_auc(self.y_true, self.probs)

    @property
    def macro_auc(self) -> float:
        return M.macro_auc(self.y_true, self.probs)

    def per_class(self) -> dict[str, dict]:
        support = np.bincount(self.y_true, minlength=len(self.classes))
        stats = M.one_vs_rest(self.confusion_matrix())
        out = {}
        for k, name in enumerate(self.classes):
            auc = float(self.class_auc[k])
            out[name] = {"support": int(support[k]), **stats[k].to_dict(), "auc": auc, "auc_grade": M.auc_grade(auc)}
        return out

    def binary(self, view: str) -> BinaryView | None:
        """The ``malignant`` or ``melanoma`` view, when the classes are diagnoses that define it;
        decided by the rule (its operating point, or the argmax class without one)."""
        decided = self.rule.decide(self.probs).get(view)
        if decided is None:
            return None
        positive = np.flatnonzero(binary_membership(self.classes, view))
        return BinaryView(view, [self.classes[k] for k in positive], np.isin(self.y_true, positive),
                          decided["score"], decided["positive"], self.operating_points.get(view))

    def class_vs_rest(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(truth, score) of one diagnosis against all the others: see :func:`class_vs_rest`."""
        return class_vs_rest(self.classes, self.y_true, self.probs, name)

    def binary_views(self) -> dict[str, BinaryView]:
        views = {v: self.binary(v) for v in VIEW_CLASSES}
        return {k: v for k, v in views.items() if v is not None and v.y_true.any() and (~v.y_true).any()}

    def with_rule(self, rule: DecisionRule) -> Evaluation:
        """The same predictions under another decision rule (no new inference)."""
        if self.logits is None:
            raise ValueError("changing the temperature needs the evaluation's logits")
        return replace(self, probs=rule.probabilities(self.logits), rule=rule)

    def losses(self) -> np.ndarray:
        """Each image's cross-entropy: -log of the probability given to its true class."""
        return -np.log(np.clip(self.probs[np.arange(len(self.y_true)), self.y_true], 1e-12, 1.0))

    def top_losses(self, k: int = 16) -> list[dict]:
        """The ``k`` worst-predicted images, worst first (fastai's ``top_losses``)."""
        losses = self.losses()
        order = np.argsort(-losses, kind="stable")[:k]
        ids = self.image_ids or [str(i) for i in range(len(self.y_true))]
        return [{"position": int(i), "image_id": ids[i], "true": self.classes[self.y_true[i]],
                 "predicted": self.classes[self.y_pred[i]], "p_true": float(self.probs[i, self.y_true[i]]),
                 "p_predicted": float(self.probs[i, self.y_pred[i]]), "loss": float(losses[i])} for i in order]

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(true class, predicted class, count) of the off-diagonal cells, most frequent first."""
        cm = self.confusion_matrix()
        pairs = [(self.classes[i], self.classes[j], int(cm[i, j]))
                 for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] >= min_count]
        return sorted(pairs, key=lambda p: -p[2])

    def summary(self) -> dict:
        cm = self.confusion_matrix()
        return json_safe({
            "description": self.description,
            "n_images": len(self.y_true),
            "classes": self.classes,
            "classes_present": [c for c, n in zip(self.classes, cm.sum(axis=1)) if n > 0],
            "accuracy": self.accuracy,
            "balanced_accuracy": self.balanced_accuracy,
            "macro_auc": self.macro_auc,
            "macro_auc_grade": M.auc_grade(self.macro_auc),
            "per_class": self.per_class(),
            "binary": {name: view.to_dict() for name, view in self.binary_views().items()},
            "isic": isic_scores(self.y_true, self.probs, self.classes),
            "temperature": self.temperature,
            "tta": self.tta,
            "top_losses": self.top_losses(20),
            "most_confused": [{"true": t, "predicted": p, "count": n} for t, p, n in self.most_confused()[:10]],
            "confusion_matrix": {"rows": "true class", "columns": "predicted class",
                                 "counts": cm.tolist(), "row_normalised": self.confusion_matrix(True).tolist()},
        })

    def save(self, folder: Path, extra: dict | None = None) -> Path:
        """``metrics.json`` (the summary plus ``extra`` figures) and ``predictions.csv`` (one row per
        image) in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "metrics.json"
        path.write_text(json.dumps(json_safe({**self.summary(), **(extra or {})}), indent=2))
        ids = self.image_ids or [str(i) for i in range(len(self.y_true))]
        with (folder / "predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "true", "predicted", *(f"p_{c}" for c in self.classes)])
            for i, (t, p, row) in enumerate(zip(self.y_true, self.y_pred, self.probs)):
                w.writerow([ids[i], self.classes[t], self.classes[p], *(f"{v:.6f}" for v in row)])
        return path


def json_safe(obj):
    """NaN -> None so the JSON is standard (json.dumps would write NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, (np.floating,)):
        return json_safe(float(obj))
    return obj


def class_vs_rest(classes: list[str], y_true: np.ndarray, probs: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth, score) of one diagnosis against all the others, the figures ISIC 2017 ranks (melanoma
    AUC, seborrheic-keratosis AUC). ``name`` is a class, or a HAM10000 code a class stands for
    (``bkl`` finds ``seborrheic_keratosis``; a HAM10000 model's ``bkl`` scores ISIC's SK images)."""
    from lesionlens.data.labels import canonical

    codes = [canonical(c) or c for c in classes]
    if name in classes:
        k = list(classes).index(name)
    elif (canonical(name) or name) in codes:
        k = codes.index(canonical(name) or name)
    else:
        raise ValueError(f"no class {name!r} among {list(classes)}")
    return np.asarray(y_true) == k, np.asarray(probs)[:, k]
