"""Which case a reader should look at next: the ones where a label teaches the model the most.

A case's usefulness adds three things, each between 0 and 1:
- ``disagreement`` (weight 2): readers disagree, so the case needs more eyes or an adjudicator;
- ``uncertainty``: the entropy of the model's probabilities, divided by its maximum (log K);
- ``near threshold``: how close a clinical view's score is to its operating threshold, 1 on it,
  0 a quarter or more away; the closest view counts.
Uncertainty and closeness weigh half each, so a case the readers disagree on always comes before
any case they do not, and among the others the model's doubts order the queue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lesionlens.cases.store import CaseRecord

NEAR = 0.25  # a score this far from the threshold, or farther, is "not close"


@dataclass(frozen=True)
class QueueItem:
    record: CaseRecord
    usefulness: float
    reasons: tuple[str, ...]


def usefulness(record: CaseRecord) -> tuple[float, tuple[str, ...]]:
    probs = [p for p in record.probabilities.values() if p > 0]
    k = max(len(record.probabilities), 2)
    uncertainty = -sum(p * math.log(p) for p in probs) / math.log(k)
    closeness, closest = 0.0, None
    for view, d in record.decision.items():
        rule = d.get("rule") or {}
        threshold = rule.get("threshold", 0.5)
        near = max(0.0, 1 - abs(float(d["score"]) - float(threshold)) / NEAR)
        if near > closeness:
            closeness, closest = near, f"{view} score {d['score']:.2f} near its threshold {threshold:.2f}"
    disagreement = record.settlement.status == "disagreement"
    reasons = []
    if disagreement:
        reasons.append("readers disagree: " + ", ".join(f"{lab.reader} {lab.label}" for lab in record.settlement.current))
    if uncertainty >= 0.5:
        reasons.append(f"the model is unsure (normalised entropy {uncertainty:.2f})")
    if closest and closeness >= 0.5:
        reasons.append(closest)
    return 2.0 * disagreement + 0.5 * uncertainty + 0.5 * closeness, tuple(reasons)


def labelling_queue(records: list[CaseRecord], reader: str, limit: int = 20,
                    adjudicate: bool = False) -> list[QueueItem]:
    """Cases for ``reader`` to label (those they have not labelled and nobody adjudicated), or, with
    ``adjudicate``, the cases whose readers disagree; most useful first, then oldest."""
    if adjudicate:
        todo = [r for r in records if r.settlement.status == "disagreement"]
    else:
        todo = [r for r in records if r.settlement.status != "adjudicated"
                and all(lab.reader != reader for lab in r.settlement.current)]
    scored = [QueueItem(r, *usefulness(r)) for r in todo]
    scored.sort(key=lambda item: (-item.usefulness, item.record.created_at))
    return scored[:limit]
