"""From a network's logits to what a user is told: calibrated probabilities and clinical decisions.

A bundle's card may carry
- ``calibration.temperature``: logits are divided by it before the softmax (temperature scaling,
  fitted on validation data);
- ``operating_points.<view>.threshold``: the malignant / melanoma decision is "positive" when the
  view's score (the summed calibrated probabilities of its positive classes) reaches it.
Without them the probabilities are the plain softmax and the decision is the argmax class.
Torch-free: ``predict``, ``evaluate``, the evaluation result and the server all decide through
this module, and all describe the rule with :meth:`DecisionRule.describe`. A bundle's rule is
``Card.rule`` (:mod:`lesionlens.bundle.card`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionlens.data.labels import VIEW_CLASSES, binary_membership


@dataclass(frozen=True)
class OperatingPoint:
    view: str  # "malignant" or "melanoma"
    threshold: float  # on the view's score
    criterion: str  # how it was chosen: "sensitivity", "specificity" or "youden"
    target: float | None = None  # the sensitivity or specificity asked for
    validated: bool = True  # chosen on images the model did not train on


    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "criterion": self.criterion, "target": self.target,
                "validated": self.validated}


@dataclass(frozen=True)
class DecisionRule:
    classes: tuple[str, ...]
    temperature: float = 1.0
    operating_points: tuple[OperatingPoint, ...] = ()

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Softmax of ``logits / temperature``, row by row, computed stably."""
        z = np.asarray(logits, dtype=np.float64) / self.temperature
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def view_scores(self, probs: np.ndarray) -> dict[str, np.ndarray]:
        """Each clinical view's score (summed probabilities of its positive classes), where the
        classes define it."""
        scores = {}
        for view in VIEW_CLASSES:
            mask = binary_membership(list(self.classes), view)
            if mask is not None:
                scores[view] = probs[..., mask].sum(axis=-1)
        return scores

    def decide(self, probs: np.ndarray) -> dict[str, dict]:
        """Per view: score, the decision and how it was made (an operating point, or the argmax)."""
        points = {p.view: p for p in self.operating_points}
        top = probs.argmax(axis=-1)
        out = {}
        for view, score in self.view_scores(probs).items():
            mask = binary_membership(list(self.classes), view)
            if view in points:
                positive = score >= points[view].threshold
                rule = points[view].to_dict()
            else:
                positive = mask[top]
                rule = {"criterion": "argmax"}
            out[view] = {"score": score, "positive": positive, "rule": rule}
        return out

    @property
    def views(self) -> list[str]:
        """The clinical views the classes define."""
        return list(self.view_scores(np.zeros((1, len(self.classes)))))

    def describe(self) -> list[str]:
        """In words: how the probabilities are made, then how each view decides."""
        lines = [f"probabilities calibrated with temperature {self.temperature:.3g}" if self.temperature != 1.0
                 else "probabilities are the plain softmax (no calibration in the card; `lesionlens calibrate` fits one)"]
        points = {p.view: p for p in self.operating_points}
        for view in self.views:
            p = points.get(view)
            if p is None:
                lines.append(f"{view}: positive when the top class is a {view} class (the card has no operating "
                             "point for this view)")
            else:
                target = f" {p.target:.3f}" if p.target is not None else ""
                where = ("on validation data" if p.validated else "on images the model TRAINED on, so UNVALIDATED: "
                         "its sensitivity on new images is unknown")
                lines.append(f"{view}: positive when p_{view} >= {p.threshold:.4f} (the operating point in the bundle "
                             f"card, chosen for {p.criterion}{target} {where})")
        if not self.views:
            lines.append("no malignant / melanoma decision: the model's classes are not diagnoses")
        return lines
