"""Windows of stored cases against a bundle's reference profile: drift tests, performance once
labels arrive, and the staleness clock.

    result = monitor_store(store, BundleModel(bundle), BundleIdentity.of(bundle), load_reference(ref), window=200)
    print("\\n".join(result.lines()));  result.to_dict()   # what monitor.json and GET /v1/monitor hold

The cases this model answered are taken in time order and cut into consecutive windows of N; a last,
incomplete window is reported as pending and not tested. The model's outputs on each case are
computed again from the stored photo (the same ONNX model and preprocessing as the answer, so the
probabilities are those served, and the embeddings, which are not stored, come with them).
A window's verdict: drift when any test's p-value is below its threshold, the thresholds being those
the reference calibrated for this window size on in-distribution windows
(:mod:`lesionlens.upkeep.thresholds`), which holds the false-alarm rate per window at its target.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lesionlens.cases.store import CaseRecord, CaseStore
from lesionlens.cases.study import Rate
from lesionlens.data.labels import binary_membership
from lesionlens.decision import DecisionRule
from lesionlens.serving.runtime import BundleModel
from lesionlens.upkeep.drift import DESCRIPTIONS, DriftResult, Sample
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.outputs import MonitorError, compute_outputs
from lesionlens.upkeep.reference import ReferenceProfile
from lesionlens.upkeep.staleness import Staleness, staleness

FORMAT = "lesionlens-monitor/1"
RULE = ("a window has drifted when any test's p-value is below its threshold; the thresholds were set on "
        "in-distribution windows of the reference (each test the same quantile of its p-values, the largest "
        "that keeps the share of those windows with any alarm at the target)")


def answered_by(records: list[CaseRecord], model: BundleIdentity) -> list[CaseRecord]:
    """The cases ``model`` answered. Cases record the answering bundle's card version (its creation
    time and weights' sha256), which names exactly one trained model."""
    return [r for r in records if r.model_version == model.version]


def check_reference(profile: ReferenceProfile, model: BundleIdentity, where: str = "the reference") -> None:
    if profile.bundle.digest != model.digest:
        raise MonitorError(f"{where} was made for bundle {profile.bundle} (version {profile.bundle.version}), not for "
                           f"{model} (version {model.version}); make one for this bundle with "
                           "`lesionlens monitor reference`")


class OutputCache:
    """Outputs already computed, by stored image (named by its content hash), for one bundle and one
    reference (whose projection the embeddings are in): a later run computes only new cases."""

    def __init__(self, key: str):
        self.key = key
        self.rows: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}

    @classmethod
    def for_(cls, model: BundleIdentity, profile: ReferenceProfile) -> "OutputCache":
        return cls(f"{model.digest}:{profile.digest}")

    def load(self, path: Path) -> "OutputCache":
        """The rows saved in ``path`` when they are for this bundle and reference (else none)."""
        if not path.is_file():
            return self
        try:
            with np.load(path, allow_pickle=False) as f:
                if str(f["key"]) != self.key:
                    return self
                emb = f["embeddings"] if "embeddings" in f.files else None
                for i, name in enumerate(f["names"]):
                    self.rows[str(name)] = (f["probabilities"][i], None if emb is None else emb[i])
        except (OSError, ValueError, KeyError):
            self.rows.clear()  # a damaged cache is recomputed, never trusted
        return self

    def save(self, path: Path) -> None:
        if not self.rows:
            return
        names = sorted(self.rows)
        arrays = {"key": np.array(self.key), "names": np.array(names),
                  "probabilities": np.stack([self.rows[n][0] for n in names])}
        if self.rows[names[0]][1] is not None:
            arrays["embeddings"] = np.stack([self.rows[n][1] for n in names])
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)


def case_sample(store: CaseStore, records: list[CaseRecord], model: BundleModel, profile: ReferenceProfile,
                cache: OutputCache | None = None) -> Sample:
    """The monitored sample of ``records``: outputs recomputed from the stored photos (or taken from
    ``cache``), embeddings projected as the reference's, quality flags as stored with each case."""
    cache = cache if cache is not None else OutputCache("")
    todo = [r for r in records if r.image not in cache.rows]
    if todo:
        paths = [store.images.path(r.image) for r in todo]
        missing = [r.id for r, p in zip(todo, paths) if not p.is_file()]
        if missing:
            raise MonitorError(f"{store.describe()}: the photo of {len(missing)} case(s) is missing (first: case "
                               f"{missing[0]}); `lesionlens cases check` lists them")
        out = compute_outputs(model, paths, [f"case {r.id}" for r in todo], check_quality=False)
        projected = None if out.embeddings is None or profile.projection is None else profile.projection(out.embeddings)
        for i, r in enumerate(todo):
            cache.rows[r.image] = (out.probabilities[i], None if projected is None else projected[i])
    probs = np.stack([cache.rows[r.image][0] for r in records])
    emb = None
    if profile.projection is not None and records and cache.rows[records[0].image][1] is not None:
        emb = np.stack([cache.rows[r.image][1] for r in records])
    return Sample(probs, emb, np.array([bool(r.quality) for r in records], dtype=bool))


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


@dataclass
class WindowResult:
    index: int
    start: datetime  # the first case's time
    end: datetime  # the last case's
    cases: int
    tests: dict[str, DriftResult]
    thresholds: dict[str, float]
    class_mix: dict[str, int]
    quality_rate: float
    performance: Performance
    staleness_days: float  # at the window's last case

    @property
    def fired(self) -> list[str]:
        return [name for name, t in self.tests.items() if t.p_value < self.thresholds[name]]

    @property
    def drift(self) -> bool:
        return bool(self.fired)

    def to_dict(self) -> dict:
        return {"index": self.index, "start": self.start.isoformat(), "end": self.end.isoformat(),
                "cases": self.cases, "drift": self.drift, "fired": self.fired,
                "tests": {name: {"statistic": t.statistic, "p_value": t.p_value, "threshold": self.thresholds[name],
                                 "drift": name in self.fired, "detail": t.detail} for name, t in self.tests.items()},
                "class_mix": self.class_mix, "quality_rate": self.quality_rate,
                "performance": self.performance.to_dict(), "staleness_days": round(self.staleness_days, 3)}


@dataclass
class MonitorResult:
    bundle: BundleIdentity
    reference: ReferenceProfile = field(repr=False)
    window: int
    store: dict  # description, cases, answered by this model, by other models
    windows: list[WindowResult]
    pending: int  # cases after the last complete window
    overall: Performance
    staleness: Staleness
    stored_difference: float  # largest |stored probability - recomputed| (0 when they are the answers)
    as_of: datetime

    @property
    def latest(self) -> WindowResult | None:
        return self.windows[-1] if self.windows else None

    def to_dict(self) -> dict:
        c = self.reference.calibration(self.window)
        latest = self.latest
        return {
            "format": FORMAT, "as_of": self.as_of.isoformat(timespec="seconds"),
            "bundle": self.bundle.to_dict(),
            "reference": {"digest": self.reference.digest, "source": self.reference.source,
                          "images": len(self.reference), "created": self.reference.created,
                          "class_mix": self.reference.class_mix(),
                          "quality_rate": float(self.reference.sample.flagged.mean())},
            "classes": self.reference.classes, "views": list(self.overall.sensitivity),
            "window": self.window, "rule": RULE, "tests": {t: DESCRIPTIONS[t] for t in c.thresholds},
            "calibration": c.to_dict(), "store": self.store, "pending": self.pending,
            "stored_difference": self.stored_difference,
            "latest": None if latest is None else {"index": latest.index, "drift": latest.drift, "fired": latest.fired},
            "windows_with_drift": sum(w.drift for w in self.windows),
            "windows": [w.to_dict() for w in self.windows],
            "performance": self.overall.to_dict(), "staleness": self.staleness.to_dict(),
        }

    def lines(self) -> list[str]:
        c = self.reference.calibration(self.window)
        s = self.store
        out = [f"monitor of {self.bundle} on {s['description']}",
               f"  {s['answered']} of {s['cases']} cases answered by this model"
               + (f" (others: {', '.join(f'{v} {n}' for v, n in s['other_models'].items())})" if s["other_models"] else ""),
               f"  reference {self.reference.digest[:12]}: {len(self.reference)} images ({self.reference.source})",
               f"  windows of {self.window}: {len(self.windows)} complete, {self.pending} cases pending; thresholds "
               + ", ".join(f"{t} p < {v:.3g}" for t, v in c.thresholds.items())
               + f" (in-distribution false alarms {c.false_alarms['any']:.1%}, target {c.target:.0%})"]
        if self.windows:
            names = list(c.thresholds)
            out.append(f"  {'window':>6} {'cases from':<20} " + " ".join(f"{n:>11}" for n in names)
                       + f"  {'verdict':<8}" + "".join(f" {v[:9] + ' sens':>20}" for v in self.overall.sensitivity))
            for w in self.windows:
                cells = " ".join(f"{_p(w.tests[n].p_value) + ('*' if n in w.fired else ' '):>11}" for n in names)
                rates = "".join(f" {str(w.performance.sensitivity[v]):>20}" for v in self.overall.sensitivity)
                out.append(f"  {w.index:>6} {w.start.strftime('%Y-%m-%d %H:%M'):<20} {cells}  "
                           f"{'DRIFT' if w.drift else 'ok':<8}{rates}")
            out.append("  (p-values; * = below the threshold)")
            latest = self.latest
            out.append(f"  latest window: {'DRIFT (' + ', '.join(latest.fired) + ')' if latest.drift else 'no drift'}; "
                       f"{sum(w.drift for w in self.windows)} of {len(self.windows)} windows drifted")
        p = self.overall
        out.append(f"  labelled cases: {p.labelled}" + "".join(
            f"; {v}: sensitivity {p.sensitivity[v]}, specificity {p.specificity[v]}" for v in p.sensitivity))
        out += ["  " + line for line in self.staleness.lines()]
        if self.stored_difference > 1e-4:
            out.append(f"  WARNING: the stored answers differ from this model's outputs by up to "
                       f"{self.stored_difference:.3g}: were the cases answered by another export of it?")
        return out


def _p(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


def monitor_store(store: CaseStore, model: BundleModel, identity: BundleIdentity, profile: ReferenceProfile,
                  window: int, cache: OutputCache | None = None, seed: int = 0,
                  now: datetime | None = None) -> MonitorResult:
    """Every complete window of the cases ``model`` answered, tested against ``profile``."""
    check_reference(profile, identity)
    calibration = profile.calibration(window)
    records = store.records()
    if not records:
        raise MonitorError(f"{store.describe()}: no cases yet; nothing to monitor")
    mine = answered_by(records, identity)
    others = Counter(r.model_version for r in records if r.model_version != identity.version)
    if not mine:
        raise MonitorError(f"{store.describe()}: none of its {len(records)} cases were answered by {identity} "
                           f"(version {identity.version}); they were answered by: "
                           + ", ".join(f"{v} ({n})" for v, n in others.most_common()))
    sample = case_sample(store, mine, model, profile, cache)
    now = now or datetime.now(timezone.utc)
    clock = staleness(model.card, records, now)
    stored = np.array([[r.probabilities.get(c, np.nan) for c in profile.classes] for r in mine], dtype=np.float64)
    difference = float(np.nanmax(np.abs(stored - sample.probabilities))) if len(mine) else 0.0
    labels = [r.settlement.label for r in mine]
    tests = profile.tests()
    windows = []
    for k in range(len(mine) // window):
        rows = np.arange(k * window, (k + 1) * window)
        part = sample.take(rows)
        results = tests.run(part, np.random.default_rng([seed, k]))
        counts = np.bincount(part.predicted, minlength=len(profile.classes))
        windows.append(WindowResult(
            k, mine[rows[0]].created_at, mine[rows[-1]].created_at, window, results, calibration.thresholds,
            {c: int(n) for c, n in zip(profile.classes, counts)}, float(part.flagged.mean()),
            performance(part.probabilities, [labels[i] for i in rows], model.rule),
            clock.days_at(mine[rows[-1]].created_at)))
    return MonitorResult(identity, profile, window,
                         {"description": store.describe(), "cases": len(records), "answered": len(mine),
                          "other_models": dict(others.most_common())},
                         windows, len(mine) % window, performance(sample.probabilities, labels, model.rule), clock,
                         difference, now)


def write_json(result: MonitorResult, path: Path) -> Path:
    path.write_text(json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n")
    return path


def champion_bundle(registry: str | Path) -> Path:
    """The folder of the registry's current champion."""
    from lesionlens.bundle.registry import Registry

    reg = Registry.open(registry)
    digest = reg.state().aliases.get("champion")
    if digest is None:
        raise MonitorError(f"{registry}: the registry has no champion yet; `lesionlens registry promote` names one")
    return reg.bundle_path(digest)


def monitor_files(db: str | Path, bundle: str | Path, reference: str | Path, window: int | None = None,
                  case_images: str | Path | None = None, cache: Path | None = None, threads: int = 1,
                  seed: int = 0) -> MonitorResult:
    """:func:`monitor_store` from paths: the case store, the bundle, the reference profile; ``window``
    defaults to the largest the reference has thresholds for; ``cache`` keeps the outputs between runs."""
    from lesionlens.upkeep.reference import load_reference

    profile = load_reference(reference)
    identity = BundleIdentity.of(bundle)
    check_reference(profile, identity, str(reference))
    window = window or max(profile.calibrations)
    profile.calibration(window)
    store = CaseStore.open(db, case_images)
    try:
        outputs = OutputCache.for_(identity, profile)
        if cache is not None:
            outputs.load(cache)
        result = monitor_store(store, BundleModel(bundle, threads=threads), identity, profile, window, outputs, seed)
        if cache is not None:
            outputs.save(cache)
        return result
    finally:
        store.close()
