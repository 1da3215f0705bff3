"""Windows of stored cases against a bundle's reference profile: drift tests, performance once
labels arrive, and the staleness clock.

    monitor = Monitor(BundleModel(bundle), BundleIdentity.of(bundle), load_reference("reference.npz"))
    result = monitor.run(store, window=200)
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

import hashlib
import os
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lesionlens.cases.store import CaseRecord, CaseStore
from lesionlens.serving.runtime import BundleModel
from lesionlens.upkeep.drift import DriftResult, Sample
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.monitor_result import MonitorResult, WindowResult
from lesionlens.upkeep.outputs import MonitorError, compute_outputs
from lesionlens.upkeep.performance import performance
from lesionlens.upkeep.reference import ReferenceProfile, load_reference
from lesionlens.upkeep.staleness import staleness


def answered_by(records: list[CaseRecord], model: BundleIdentity) -> list[CaseRecord]:
    """The cases ``model`` answered: those that name its bundle digest; a case stored before cases
    kept the digest (store revision 0002) counts when it names the bundle's card version (creation
    time and weights' sha256)."""
    return [r for r in records if answering_model(r) in (model.digest, f"version {model.version}")]


def answering_model(record: CaseRecord) -> str:
    """The model a case names: its bundle digest, or ``version ...`` for a case stored without one."""
    return record.model_digest or f"version {record.model_version}"


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


class Monitor:
    """One model and its reference profile, keeping what was computed: the outputs per stored photo
    and the tests per window, by the cases in it (new cases only add windows; an erasure changes the
    windows after it, and those are tested again). The CLI runs
    it once; the server keeps one per served model and runs it on every request."""

    def __init__(self, model: BundleModel, identity: BundleIdentity, profile: ReferenceProfile,
                 outputs: OutputCache | None = None, seed: int = 0):
        check_reference(profile, identity)
        self.model = model
        self.identity = identity
        self.profile = profile
        self.outputs = outputs if outputs is not None else OutputCache.for_(identity, profile)
        self.seed = seed
        self._tests: dict[tuple, dict[str, DriftResult]] = {}
        self._lock = threading.Lock()  # one run at a time: the caches are shared

    def run(self, store: CaseStore, window: int | None = None, now: datetime | None = None) -> MonitorResult:
        """Every complete window of the cases this model answered, tested against the reference;
        ``window`` defaults to the largest the reference has thresholds for."""
        with self._lock:
            return self._run(store, window or max(self.profile.calibrations), now)

    def _run(self, store: CaseStore, window: int, now: datetime | None) -> MonitorResult:
        profile, identity = self.profile, self.identity
        calibration = profile.calibration(window)
        records = store.records()
        if not records:
            raise MonitorError(f"{store.describe()}: no cases yet; nothing to monitor")
        mine = answered_by(records, identity)
        chosen = {r.id for r in mine}
        others = Counter(answering_model(r) for r in records if r.id not in chosen)
        if not mine:
            raise MonitorError(f"{store.describe()}: none of its {len(records)} cases were answered by {identity} "
                               f"(version {identity.version}); they were answered by: "
                               + ", ".join(f"{v} ({n})" for v, n in others.most_common()))
        sample = case_sample(store, mine, self.model, profile, self.outputs)
        now = now or datetime.now(timezone.utc)
        clock = staleness(self.model.card, records, now)
        stored = np.array([[r.probabilities.get(c, np.nan) for c in profile.classes] for r in mine], dtype=np.float64)
        difference = float(np.nanmax(np.abs(stored - sample.probabilities)))
        labels = [r.settlement.label for r in mine]
        tests = profile.tests()
        windows = []
        for k in range(len(mine) // window):
            rows = np.arange(k * window, (k + 1) * window)
            part = sample.take(rows)
            key = (window, k, hashlib.sha256(" ".join(mine[i].id for i in rows).encode()).hexdigest())
            if key not in self._tests:
                self._tests[key] = tests.run(part, np.random.default_rng([self.seed, k]))
            counts = np.bincount(part.predicted, minlength=len(profile.classes))
            windows.append(WindowResult(
                k, mine[rows[0]].created_at, mine[rows[-1]].created_at, window, self._tests[key],
                calibration.thresholds, {c: int(n) for c, n in zip(profile.classes, counts)},
                float(part.flagged.mean()), performance(part.probabilities, [labels[i] for i in rows], self.model.rule),
                clock.days_at(mine[rows[-1]].created_at)))
        return MonitorResult(identity, profile, window,
                             {"description": store.describe(), "cases": len(records), "answered": len(mine),
                              "other_models": dict(others.most_common())},
                             windows, len(mine) % window, performance(sample.probabilities, labels, self.model.rule),
                             clock, difference, now)


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
    """:class:`Monitor` run from paths: the case store, the bundle, the reference profile; ``window``
    defaults to the largest the reference has thresholds for; ``cache`` keeps the outputs between runs."""
    profile = load_reference(reference)
    identity = BundleIdentity.of(bundle)
    check_reference(profile, identity, str(reference))
    if window is not None:
        profile.calibration(window)  # refused before any work when the reference cannot judge it
    outputs = OutputCache.for_(identity, profile)
    if cache is not None:
        outputs.load(cache)
    monitor = Monitor(BundleModel(bundle, threads=threads), identity, profile, outputs, seed)
    store = CaseStore.open(db, case_images)
    try:
        result = monitor.run(store, window)
    finally:
        store.close()
    if cache is not None:
        outputs.save(cache)
    return result
