"""Is the challenger at least as good as the champion? Paired non-inferiority on the same images.

For each clinical view both models answer (malignant, melanoma), each model deciding with its own
card's rule (temperature and operating point), five criteria, each as the challenger's *advantage*
(challenger - champion where higher is better, champion - challenger where lower is better, so a
positive advantage always favours the challenger) with an interval, against a margin:

- sensitivity and specificity at each model's operating point: paired, stratified bootstrap
  (the same resampled images for both models, drawn within the view's positives and negatives);
- AUC: DeLong's test for correlated AUCs (normal interval from its standard error);
- ECE and Brier score of the view's score (the probability a user is shown): paired bootstrap.

The interval is the two-sided 95% interval, so its lower bound is a one-sided 97.5% bound: the
convention of non-inferiority trials (ICH E9; CONSORT for non-inferiority, Piaggio et al. 2012,
"a two-sided 95% CI, i.e. one-sided alpha 0.025"). A promotion that replaces the model every case
is answered by should be at least as hard to earn as a trial's claim, and the intervals are then
the same 95% intervals the evaluation report prints.

Verdicts: on the whole gate set a criterion passes when its lower bound is >= -margin. In a
subgroup (sex, age band, body site) a criterion is "non-inferior" (lower bound >= -margin),
"inconclusive" (the interval straddles -margin) or "worse" (the whole interval lies below
-margin: the challenger is shown to be worse there by more than the margin). The gate fails on
any primary failure and on any "worse" subgroup; requiring non-inferiority in every subgroup
would fail nearly every honest challenger, since a subgroup of 20-50 positives gives intervals
wider than ten points. Many subgroup comparisons are made (views x subgroups x 5 criteria), each
with a 2.5% chance of a false "worse" when the models are equally good *and* differ by exactly
the margin; with a true difference of zero the chance per comparison is far smaller.
Subgroups with fewer than ``min_positives`` positives or ``min_negatives`` negatives are listed as
too few to judge, never dropped silently.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

from lesionlens.data.labels import VIEW_CLASSES
from lesionlens.evaluation.bootstrap import (
    Interval,
    calibration_rows,
    decision_samples,
    delong_test,
    stratified_indices,
)
from lesionlens.evaluation.result import BinaryView, Evaluation
from lesionlens.upkeep.gate_settings import GateSettings

# Criterion -> (how it is estimated, whether higher is better)
METRICS = {
    "sensitivity": ("paired stratified bootstrap", True),
    "specificity": ("paired stratified bootstrap", True),
    "auc": ("DeLong", True),
    "ece": ("paired stratified bootstrap", False),
    "brier": ("paired stratified bootstrap", False),
}
VERDICTS = {"primary": ("pass", "fail"), "subgroup": ("non-inferior", "inconclusive", "worse")}


@dataclass(frozen=True)
class Subgroup:
    """Images sharing a metadata value; ``dimension`` None is the whole gate set."""

    dimension: str | None  # "sex", "age_band", "site"
    value: str | None

    @property
    def primary(self) -> bool:
        return self.dimension is None

    def __str__(self) -> str:
        return "all images" if self.primary else f"{self.dimension.replace('_', ' ')} {self.value}"

    def to_dict(self) -> dict:
        return {"dimension": self.dimension, "value": self.value}


@dataclass(frozen=True)
class Criterion:
    """One figure of both models on the same images, the challenger's advantage and the verdict."""

    view: str
    metric: str  # a key of METRICS
    subgroup: Subgroup
    champion: float
    challenger: float
    advantage: Interval  # > 0 favours the challenger
    margin: float
    positives: int
    negatives: int

    @property
    def method(self) -> str:
        return METRICS[self.metric][0]

    @property
    def verdict(self) -> str:
        if self.advantage.low >= -self.margin:
            return "pass" if self.subgroup.primary else "non-inferior"
        if self.subgroup.primary:
            return "fail"
        return "worse" if self.advantage.high < -self.margin else "inconclusive"

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "worse")

    @property
    def name(self) -> str:
        where = "" if self.subgroup.primary else f" ({self.subgroup})"
        return f"{self.view} {self.metric}{where}"

    def reason(self) -> str:
        a = self.advantage
        if self.subgroup.primary:
            return (f"{self.name}: the challenger's advantage {a.estimate:+.3f} [{a.low:+.3f}, {a.high:+.3f}] has its "
                    f"lower bound below -{self.margin:g}")
        return (f"{self.name}: the challenger is worse beyond the margin: advantage {a.estimate:+.3f} "
                f"[{a.low:+.3f}, {a.high:+.3f}] lies wholly below -{self.margin:g}")

    def to_dict(self) -> dict:
        return {"view": self.view, "metric": self.metric, **self.subgroup.to_dict(), "champion": self.champion,
                "challenger": self.challenger, "advantage": self.advantage.to_dict(), "margin": self.margin,
                "better": "higher" if METRICS[self.metric][1] else "lower", "method": self.method,
                "positives": self.positives, "negatives": self.negatives, "verdict": self.verdict}


@dataclass(frozen=True)
class TooFew:
    """A view in a subgroup with too few positives or negatives to judge."""

    view: str
    subgroup: Subgroup
    positives: int
    negatives: int

    def to_dict(self) -> dict:
        return {"view": self.view, **self.subgroup.to_dict(), "positives": self.positives, "negatives": self.negatives}


@dataclass
class Judgement:
    """Every criterion, primary and per subgroup, and what could not be judged."""

    settings: GateSettings
    views: list[str]
    criteria: list[Criterion] = field(default_factory=list)
    too_few: list[TooFew] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # views the champion answers and the challenger does not

    @property
    def primary(self) -> list[Criterion]:
        return [c for c in self.criteria if c.subgroup.primary]

    @property
    def subgroups(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.subgroup.primary]

    def reasons(self) -> list[str]:
        """Why the gate fails; empty when it passes."""
        out = [f"{view}: the champion decides it and the challenger cannot (its classes do not define it)"
               for view in self.missing]
        for t in self.too_few:
            if t.subgroup.primary:
                out.append(f"{t.view}: the gate set has {t.positives} positive and {t.negatives} negative images; "
                           f"judging needs at least {self.settings.min_positives} and {self.settings.min_negatives}")
        if not self.views:
            out.append("no clinical view (malignant, melanoma) to judge: the champion's classes define none")
        return out + [c.reason() for c in self.primary if c.failed] + [c.reason() for c in self.subgroups if c.failed]

    @property
    def passed(self) -> bool:
        return not self.reasons()


def judge(champion: Evaluation, challenger: Evaluation, subgroups: dict[str, list[str]],
          settings: GateSettings | None = None) -> Judgement:
    """Every criterion of the challenger against the champion, both evaluated on the same images in
    the same order; ``subgroups`` maps a dimension to each image's value ("unknown" is not judged)."""
    settings = settings or GateSettings()
    if champion.image_ids != challenger.image_ids:
        raise ValueError("the gate compares both models on the same images, in the same order")
    views = [v for v in VIEW_CLASSES if champion.binary(v) is not None]
    out = Judgement(settings, views)
    for view in views:
        a, b = champion.binary(view), challenger.binary(view)
        if b is None:
            out.missing.append(view)
            continue
        if not np.array_equal(a.y_true, b.y_true):
            raise ValueError(f"{view}: the two models read the gate set's labels differently")
        groups = [(Subgroup(None, None), np.arange(len(a.y_true)))]
        for dimension, values in subgroups.items():
            values = np.asarray(values)
            for value in sorted(set(values) - {"unknown", ""}):
                groups.append((Subgroup(dimension, value), np.flatnonzero(values == value)))
        for group, rows in groups:
            positives, negatives = int(a.y_true[rows].sum()), int((~a.y_true[rows]).sum())
            if positives < settings.min_positives or negatives < settings.min_negatives:
                out.too_few.append(TooFew(view, group, positives, negatives))
            else:
                out.criteria += compare_view(a, b, rows, group, settings)
    return out


def compare_view(a: BinaryView, b: BinaryView, rows: np.ndarray, group: Subgroup,
                 settings: GateSettings) -> list[Criterion]:
    """The five criteria of one view on the images ``rows``: the same bootstrap resamples for both
    models (a paired comparison), drawn within the positives and the negatives."""
    truth = a.y_true[rows]
    key = f"{a.name}|{group.dimension}|{group.value}"  # each group its own stream, the same on every run
    seed = (settings.seed * 1_000_003 + zlib.crc32(key.encode())) % 2**32
    idx = rows[stratified_indices(truth.astype(int), settings.resamples, seed)]
    every = rows[None, :]
    lo, hi = 100 * (1 - settings.level) / 2, 100 * (1 + settings.level) / 2
    n_pos, n_neg = int(truth.sum()), int((~truth).sum())
    out = []

    def figures(view: BinaryView, indices: np.ndarray) -> dict[str, np.ndarray]:
        return decision_samples(view, indices) | calibration_rows(view.y_true, view.score, indices, settings.bins)

    point_a, point_b = figures(a, every), figures(b, every)
    samples_a, samples_b = figures(a, idx), figures(b, idx)
    for metric, (method, higher) in METRICS.items():
        sign = 1.0 if higher else -1.0
        if metric == "auc":
            va, vb, _, _, se = delong_test(truth, a.score[rows], b.score[rows])
            diff, half = vb - va, float(norm.ppf((1 + settings.level) / 2)) * se
            advantage = Interval(diff, diff - half, diff + half, settings.level)
        else:
            va, vb = float(point_a[metric][0]), float(point_b[metric][0])
            d = sign * (samples_b[metric] - samples_a[metric])
            d = d[np.isfinite(d)]
            advantage = Interval(sign * (vb - va) + 0.0, float(np.percentile(d, lo)) + 0.0,
                                 float(np.percentile(d, hi)) + 0.0, settings.level)  # + 0.0: no -0.0
        out.append(Criterion(a.name, metric, group, va, vb, advantage, settings.margin(metric), n_pos, n_neg))
    return out
