"""From the labels readers gave to the one a case is trained on, and how far readers agree.

Every label is kept (append-only); a reader's newest label for a case is their current opinion.
A case is *settled* when an adjudication exists (the newest one counts) or when every current
label agrees; readers who disagree put the case in the adjudication queue. Torch-, pandas- and
sklearn-free: the server computes the queue and the agreement table with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

# Strongest first: the source a settled label is exported with, when agreeing readers differ.
SOURCE_STRENGTH = ("histo", "confocal", "follow_up", "consensus", "single_reader")


@dataclass(frozen=True)
class Label:
    id: int
    case_id: str
    label: str
    source: str
    reader: str
    created_at: object  # datetime
    note: str | None = None


@dataclass(frozen=True)
class Settlement:
    status: str  # "unlabelled", "agreed", "disagreement" or "adjudicated"
    label: str | None  # the label to train on; None unless agreed or adjudicated
    source: str | None
    current: tuple[Label, ...]  # each reader's newest label
    version: str  # which rows decided it ("labels:3,7" or "adjudication:2"), for export manifests
    adjudicator: str | None = None
    note: str | None = None  # the adjudicator's

    @property
    def settled(self) -> bool:
        return self.label is not None


def current_labels(labels: Iterable[Label]) -> tuple[Label, ...]:
    """Each reader's newest label (by time, then by id), ordered by reader."""
    newest: dict[str, Label] = {}
    for lab in labels:
        have = newest.get(lab.reader)
        if have is None or (lab.created_at, lab.id) > (have.created_at, have.id):
            newest[lab.reader] = lab
    return tuple(newest[r] for r in sorted(newest))


def settle(labels: Iterable[Label], adjudications: Sequence[Label] = ()) -> Settlement:
    """The settled label of one case, from all its label rows and adjudication rows (an adjudication
    is a :class:`Label` whose ``reader`` is the adjudicator)."""
    current = current_labels(labels)
    if adjudications:
        last = max(adjudications, key=lambda a: (a.created_at, a.id))
        return Settlement("adjudicated", last.label, last.source, current, f"adjudication:{last.id}",
                          last.reader, last.note)
    version = "labels:" + ",".join(str(lab.id) for lab in current)
    if not current:
        return Settlement("unlabelled", None, None, current, "")
    if len({lab.label for lab in current}) > 1:
        return Settlement("disagreement", None, None, current, version)
    source = min((lab.source for lab in current), key=_strength)
    return Settlement("agreed", current[0].label, source, current, version)


def _strength(source: str) -> int:
    return SOURCE_STRENGTH.index(source) if source in SOURCE_STRENGTH else len(SOURCE_STRENGTH)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two readers' labels on the same cases; nan when undefined (no cases, or
    both readers always gave one and the same label)."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} labels against {len(b)}")
    if not a:
        return float("nan")
    classes = sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(classes)}
    table = np.zeros((len(classes), len(classes)))
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    n = table.sum()
    observed = np.trace(table) / n
    expected = float((table.sum(0) * table.sum(1)).sum()) / n**2
    if expected == 1.0:
        return float("nan")
    return float((observed - expected) / (1 - expected))


@dataclass(frozen=True)
class PairAgreement:
    reader_a: str
    reader_b: str
    cases: int  # cases both labelled
    agreement: float  # fraction of those with the same label
    kappa: float

    def to_dict(self) -> dict:
        return {"reader_a": self.reader_a, "reader_b": self.reader_b, "cases": self.cases,
                "agreement": _finite(self.agreement), "kappa": _finite(self.kappa)}


def agreement_table(current_by_case: Iterable[Sequence[Label]]) -> list[PairAgreement]:
    """Agreement and Cohen's kappa for every pair of readers, over the cases both labelled."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for current in current_by_case:
        by_reader = {lab.reader: lab.label for lab in current}
        for ra, rb in combinations(sorted(by_reader), 2):
            pairs.setdefault((ra, rb), []).append((by_reader[ra], by_reader[rb]))
    table = []
    for (ra, rb), values in sorted(pairs.items()):
        a, b = [v[0] for v in values], [v[1] for v in values]
        same = sum(x == y for x, y in values) / len(values)
        table.append(PairAgreement(ra, rb, len(values), same, cohen_kappa(a, b)))
    return table


def _finite(value: float) -> float | None:
    return None if value != value else round(value, 4)
