"""The study view: who the cases come from (body site, age band, sex), what they turned out to be,
and how the model did in each subgroup at its operating point.

Only cases with research consent count. Sensitivity and specificity are those of the decision the
server gave (the stored ``decision``, at the threshold in force then) against the settled label,
with Wilson 95% intervals. Torch-, pandas- and sklearn-free: the server's study page uses it.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lesionlens.cases.store import CaseRecord
from lesionlens.data.labels import binary_membership
from lesionlens.data.metadata import AGE_BANDS, age_band
from lesionlens.evaluation.proportions import wilson_interval

DIMENSIONS = ("all", "site", "age_band", "sex")


@dataclass(frozen=True)
class Rate:
    """A proportion with its 95% interval: ``successes`` of ``n``."""

    successes: int
    n: int
    estimate: float
    low: float
    high: float

    @classmethod
    def of(cls, successes: int, n: int) -> "Rate":
        return cls(successes, n, *wilson_interval(successes, n))

    def to_dict(self) -> dict:
        clean = (lambda v: None if math.isnan(v) else round(v, 4))
        return {"successes": self.successes, "n": self.n, "estimate": clean(self.estimate),
                "low": clean(self.low), "high": clean(self.high)}

    def __str__(self) -> str:
        return "-" if self.n == 0 else f"{self.estimate:.2f} [{self.low:.2f}, {self.high:.2f}] of {self.n}"


@dataclass
class Subgroup:
    dimension: str  # "all", "site", "age_band" or "sex"
    value: str
    cases: int = 0
    labelled: int = 0
    diagnoses: Counter = field(default_factory=Counter)
    sensitivity: dict[str, Rate] = field(default_factory=dict)  # per clinical view
    specificity: dict[str, Rate] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "value": self.value, "cases": self.cases, "labelled": self.labelled,
                "diagnoses": dict(self.diagnoses),
                "sensitivity": {v: r.to_dict() for v, r in self.sensitivity.items()},
                "specificity": {v: r.to_dict() for v, r in self.specificity.items()}}


@dataclass
class Study:
    cases: int  # with research consent
    without_consent: int  # left out
    views: list[str]
    groups: list[Subgroup]

    def to_dict(self) -> dict:
        return {"cases": self.cases, "without_consent": self.without_consent, "views": self.views,
                "groups": [g.to_dict() for g in self.groups]}

    def group(self, dimension: str, value: str) -> Subgroup:
        return next(g for g in self.groups if g.dimension == dimension and g.value == value)

    def lines(self) -> list[str]:
        """The console table."""
        out = [f"{self.cases} cases with research consent ({self.without_consent} without, left out)"]
        head = f"  {'subgroup':<26} {'cases':>6} {'labelled':>8}"
        for v in self.views:
            head += f"  {v + ' sensitivity':<28} {v + ' specificity':<28}"
        out.append(head)
        for g in self.groups:
            row = f"  {g.dimension + ': ' + g.value:<26} {g.cases:>6} {g.labelled:>8}"
            for v in self.views:
                row += f"  {str(g.sensitivity[v]):<28} {str(g.specificity[v]):<28}"
            out.append(row)
        return out

    def write_csv(self, path: Path) -> Path:
        diagnoses = sorted({d for g in self.groups for d in g.diagnoses})
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dimension", "value", "cases", "labelled", *diagnoses,
                        *[f"{v}_{m}_{part}" for v in self.views for m in ("sensitivity", "specificity")
                          for part in ("estimate", "low", "high", "n")]])
            for g in self.groups:
                rates = []
                for v in self.views:
                    for r in (g.sensitivity[v], g.specificity[v]):
                        d = r.to_dict()
                        rates += [d["estimate"], d["low"], d["high"], d["n"]]
                w.writerow([g.dimension, g.value, g.cases, g.labelled, *[g.diagnoses.get(d, 0) for d in diagnoses],
                            *rates])
        return path


def study_tables(records: list[CaseRecord], classes: list[str]) -> Study:
    consented = [r for r in records if r.metadata.consent_research]
    views = sorted({v for r in consented for v in r.decision if binary_membership(classes, v) is not None})
    positives = {v: {c for c, m in zip(classes, binary_membership(classes, v)) if m} for v in views}
    groups: dict[tuple[str, str], Subgroup] = {}
    tallies: dict[tuple[str, str, str], Counter] = {}
    for r in consented:
        keys = [("all", "all"), ("site", r.metadata.site or "unknown"), ("age_band", age_band(r.metadata.age)),
                ("sex", r.metadata.sex or "unknown")]
        label = r.settlement.label
        for key in keys:
            g = groups.setdefault(key, Subgroup(*key))
            g.cases += 1
            if label is None:
                continue
            g.labelled += 1
            g.diagnoses[label] += 1
            for v in views:
                if v not in r.decision:
                    continue
                truth, said = label in positives[v], bool(r.decision[v]["positive"])
                tallies.setdefault((*key, v), Counter())[("tp" if said else "fn") if truth else ("fp" if said else "tn")] += 1
    for (dim, value), g in groups.items():
        for v in views:
            t = tallies.get((dim, value, v), Counter())
            g.sensitivity[v] = Rate.of(t["tp"], t["tp"] + t["fn"])
            g.specificity[v] = Rate.of(t["tn"], t["tn"] + t["fp"])
    order = {d: i for i, d in enumerate(DIMENSIONS)}
    bands = [age_band(low) for low, _ in AGE_BANDS] + ["unknown"]

    def rank(g: Subgroup):  # age bands in age order; other subgroups largest first
        return (order[g.dimension], bands.index(g.value) if g.dimension == "age_band" else -g.cases, g.value)

    ordered = sorted(groups.values(), key=rank)
    return Study(len(consented), len(records) - len(consented), views, ordered)


def study_of_store(store) -> Study:
    """The study of every case in ``store``; the classes are those of the models that answered."""
    records = store.records()
    classes: list[str] = []
    for r in records:
        classes += [c for c in r.probabilities if c not in classes]
    return study_tables(records, classes)
