"""Sensitivity and specificity at the card's operating point, against settled labels, with Wilson
95% intervals (:class:`lesionlens.cases.study.Rate`): per monitor window and over every labelled case."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lesionlens.cases.study import Rate
from lesionlens.data.labels import binary_membership
from lesionlens.decision import DecisionRule


@dataclass
class Performance:
    """Sensitivity and specificity at the card's operating point against settled labels."""

    labelled: int
    sensitivity: dict[str, Rate]  # per clinical view
    specificity: dict[str, Rate]

    def to_dict(self) -> dict:
        return {"labelled": self.labelled, "sensitivity": {v: r.to_dict() for v, r in self.sensitivity.items()},
                "specificity": {v: r.to_dict() for v, r in self.specificity.items()}}


def performance(probabilities: np.ndarray, labels: list[str | None], rule: DecisionRule) -> Performance:
    known = [i for i, label in enumerate(labels) if label is not None]
    classes = list(rule.classes)
    sensitivity, specificity = {}, {}
    decisions = rule.decide(probabilities[known]) if known else {}
    for view in rule.views:
        mask = binary_membership(classes, view)
        positives = {c for c, m in zip(classes, mask) if m}
        truth = np.array([labels[i] in positives for i in known], dtype=bool)
        said = np.asarray(decisions[view]["positive"], dtype=bool) if known else np.zeros(0, bool)
        sensitivity[view] = Rate.of(int((said & truth).sum()), int(truth.sum()))
        specificity[view] = Rate.of(int((~said & ~truth).sum()), int((~truth).sum()))
    return Performance(len(known), sensitivity, specificity)
