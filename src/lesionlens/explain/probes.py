"""Linear probes: can a nuisance variable be read off the network's embeddings?

If a logistic regression on the embeddings tells HAM10000's four acquisition sources apart, the
network encodes where an image came from, and a source that correlates with the diagnosis is a
shortcut within its reach. Each probe is a scikit-learn pipeline (standardise, then logistic regression
with balanced class weights), scored by balanced accuracy on out-of-fold predictions of a
cross-validation whose folds are grouped by the data set's ``group`` column (lesion / patient), so
no lesion sits on both sides of a fold.

"Above chance" is measured, not assumed: beside chance (1 / k for balanced accuracy over k classes)
the same probe runs on shuffled labels a few times (the permutation baseline, which also absorbs any
optimism of the procedure), and the 95% interval of the balanced accuracy (stratified bootstrap of the
out-of-fold predictions, :func:`lesionlens.evaluation.bootstrap.stratified_indices`) must clear both.
The class label itself is probed too, as the reference line. Values with fewer groups than folds
cannot be cross-validated; they are left out and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lesionlens.evaluation.bootstrap import Interval, stratified_indices  # noqa: E402
from lesionlens.evaluation.metrics import balanced_accuracy, confusion_matrix  # noqa: E402
from lesionlens.explain.display import save_figure  # noqa: E402

FOLDS = 5
PERMUTATIONS = 5  # shuffled-label repeats: enough to see the baseline's level and spread, each costs one CV
RESAMPLES = 1000
LABEL = "label"  # the class column: probed as the reference


class NotProbed(ValueError):
    """A variable that cannot be probed: fewer than two values with enough groups for the folds."""


@dataclass(frozen=True)
class Probe:
    """One variable's probe: balanced accuracy with its interval, against chance and shuffled labels."""

    variable: str
    values: tuple[str, ...]  # the values probed (the classes of the probe)
    counts: dict[str, int]
    balanced_accuracy: Interval
    chance: float
    permuted: tuple[float, ...]  # balanced accuracy of the same probe on shuffled labels
    folds: int
    grouped: bool
    left_out: dict[str, str] = field(default_factory=dict)  # value -> why it was not probed

    @property
    def baseline(self) -> float:
        """The bar to clear: chance or the best shuffled-label score, whichever is higher."""
        return max(self.chance, *self.permuted) if self.permuted else self.chance

    @property
    def above_chance(self) -> bool:
        return self.balanced_accuracy.low > self.baseline

    def to_dict(self) -> dict:
        return {"variable": self.variable, "values": list(self.values), "counts": self.counts,
                "balanced_accuracy": self.balanced_accuracy.to_dict(), "chance": self.chance,
                "permuted": list(self.permuted), "baseline": self.baseline, "above_chance": self.above_chance,
                "folds": self.folds, "grouped": self.grouped, "left_out": self.left_out}

    def line(self) -> str:
        verdict = "ABOVE chance" if self.above_chance else "not above chance"
        shuffled = f", shuffled {np.mean(self.permuted):.3f} (max {max(self.permuted):.3f})" if self.permuted else ""
        return (f"  {self.variable} ({len(self.values)} values): balanced accuracy {self.balanced_accuracy}, "
                f"chance {self.chance:.3f}{shuffled}: {verdict}")


@dataclass
class ProbeReport:
    """The probes of one set of embeddings; ``skipped`` holds variables that could not be probed."""

    probes: list[Probe]
    skipped: dict[str, str] = field(default_factory=dict)
    n: int = 0

    def to_dict(self) -> dict:
        return {"n": self.n, "probes": [p.to_dict() for p in self.probes], "skipped": self.skipped}

    def lines(self) -> list[str]:
        reference = f"reference: {LABEL}" if any(p.variable == LABEL for p in self.probes) else "no reference"
        out = [f"Linear probes on {self.n:,} embeddings (balanced accuracy, 95% interval; {reference}):"]
        for p in self.probes:
            out.append(p.line())
            out += [f"    left out {value!r}: {why}" for value, why in p.left_out.items()]
        out += [f"  {name}: not probed, {why}" for name, why in self.skipped.items()]
        return out

    def write_figures(self, out_dir: str | Path) -> dict[str, Path]:
        if not self.probes:
            return {}
        fig, ax = plt.subplots(figsize=(7, 0.6 * len(self.probes) + 1.4))
        for i, p in enumerate(self.probes):
            ba = p.balanced_accuracy
            ax.errorbar(ba.estimate, i, xerr=[[ba.estimate - ba.low], [ba.high - ba.estimate]], fmt="o",
                        color="#c0392b" if p.above_chance else "#7f8c8d", capsize=4,
                        label="balanced accuracy (95% interval)" if i == 0 else None)
            ax.plot([p.chance] * 2, [i - 0.35, i + 0.35], color="black", lw=1.5, label="chance" if i == 0 else None)
            if p.permuted:
                ax.plot(p.permuted, [i] * len(p.permuted), "x", color="#2980b9", ms=6,
                        label="shuffled labels" if i == 0 else None)
        ax.set_yticks(range(len(self.probes)), [f"{p.variable} ({len(p.values)})" for p in self.probes])
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("balanced accuracy of a linear probe on the embeddings")
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title("What the embeddings encode", fontsize=10)
        return {"probes": save_figure(fig, Path(out_dir) / "probes.png")}


def _out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """Out-of-fold predictions of a standardised logistic regression, folds grouped by ``groups``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if groups is None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    else:
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(x, y, groups)
    pred = np.empty(len(y), dtype=np.int64)
    # one BLAS thread: these fits are small, and on 2 busy cores threads that wait on each other made
    # one fit on 950 x 1,280 embeddings take 15 s instead of 0.4 s
    with threadpool_limits(1):
        for train, test in splits:
            probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
            pred[test] = probe.fit(x[train], y[train]).predict(x[test])
    return pred


def _balanced_accuracy_rows(y: np.ndarray, pred: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Balanced accuracy on each row of resampled indices ``idx`` (B x N; stratified, so every class
    keeps its count)."""
    t, p = y[idx], pred[idx]
    return np.mean([((t == k) & (p == k)).sum(axis=1) / (t == k).sum(axis=1) for k in np.unique(y)], axis=0)


def linear_probe(embeddings: np.ndarray, values: Sequence, groups: Sequence | None = None, variable: str = "variable",
                 folds: int = FOLDS, permutations: int = PERMUTATIONS, seed: int = 0,
                 n_resamples: int = RESAMPLES) -> Probe:
    """Probe ``values`` (one per embedding; missing ones are dropped) from ``embeddings`` (N x D)."""
    x = np.asarray(embeddings, dtype=np.float64)
    values = pd.Series(list(values), dtype=object)
    if len(values) != len(x):
        raise ValueError(f"{variable}: {len(values)} values for {len(x)} embeddings")
    if groups is not None:  # an image without a group is a group of its own
        groups = pd.Series(list(groups), dtype=object)
        groups = groups.where(groups.notna(), pd.Series([f"image {i}" for i in range(len(groups))], dtype=object))
    keep = values.notna().to_numpy().copy()
    labels = values.astype(str).to_numpy()
    left_out = {}
    for value in sorted(set(labels[keep])):
        on = keep & (labels == value)
        n_groups = int(on.sum()) if groups is None else int(groups[on].nunique())
        if n_groups < folds:
            left_out[value] = (f"{int(on.sum())} images from {n_groups} {'groups' if groups is not None else 'images'}, "
                               f"fewer than the {folds} folds")
            keep &= labels != value
    probed = sorted(set(labels[keep]))
    if len(probed) < 2:
        raise NotProbed(f"{variable}: {len(probed)} value(s) left to probe after leaving out those with fewer "
                         f"than {folds} groups ({', '.join(left_out) or 'none'}); a probe needs two")
    y = np.searchsorted(probed, labels[keep])
    x, g = x[keep], None if groups is None else groups[keep].astype(str).to_numpy()
    pred = _out_of_fold(x, y, g, folds, seed)
    point = balanced_accuracy(confusion_matrix(y, pred, len(probed)))
    spread = _balanced_accuracy_rows(y, pred, stratified_indices(y, n_resamples, seed))
    rng = np.random.default_rng(seed)
    permuted = []
    for _ in range(permutations):
        shuffled = rng.permutation(y)
        permuted.append(balanced_accuracy(confusion_matrix(shuffled, _out_of_fold(x, shuffled, g, folds, seed),
                                                           len(probed))))
    counts = {value: int((y == k).sum()) for k, value in enumerate(probed)}
    return Probe(variable, tuple(probed), counts,
                 Interval(float(point), float(np.percentile(spread, 2.5)), float(np.percentile(spread, 97.5))),
                 1.0 / len(probed), tuple(float(v) for v in permuted), folds, groups is not None, left_out)


def probe_columns(embeddings: np.ndarray, frame: pd.DataFrame, columns: Sequence[str], group_column: str | None = "group",
                  reference: str | None = LABEL, folds: int = FOLDS, permutations: int = PERMUTATIONS, seed: int = 0,
                  n_resamples: int = RESAMPLES, where: str = "the table") -> ProbeReport:
    """Probe each of ``columns`` of ``frame`` (one row per embedding), plus the ``reference`` column
    first; folds are grouped by ``group_column`` when the frame has it. ``where`` names the table in
    errors (its file)."""
    if len(frame) != len(embeddings):
        raise ValueError(f"{where}: {len(frame)} rows for {len(embeddings)} embeddings")
    wanted = list(dict.fromkeys(([reference] if reference else []) + list(columns)))
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} has no column {', '.join(map(repr, missing))}; its columns are "
                         f"{', '.join(map(str, frame.columns))}")
    has_groups = bool(group_column) and group_column in frame.columns and frame[group_column].notna().any()
    groups = frame[group_column] if has_groups else None
    probes, skipped = [], {}
    for column in wanted:
        try:
            probes.append(linear_probe(embeddings, frame[column], groups, column, folds, permutations, seed, n_resamples))
        except NotProbed as e:
            skipped[column] = str(e)
    return ProbeReport(probes, skipped, len(frame))
