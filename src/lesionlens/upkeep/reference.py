"""A bundle's reference profile: how its outputs look on data it did not train on.

    profile = build_reference(bundle, reference_images(bundle))   # its validation partition
    profile.save("runs/ham/reference.npz");  profile = load_reference("runs/ham/reference.npz")

The profile holds, for each reference image, the calibrated probabilities, the penultimate embedding
projected on the reference's leading principal components, and the image-quality flag; the
projection itself and the kernel width of the embeddings' test; and, per window size, the drift
thresholds calibrated on in-distribution windows (:mod:`lesionlens.upkeep.thresholds`). It names
the bundle by its digest, so a monitor refuses a reference made for another model.

The file is an ``.npz`` read without pickle: numeric arrays and one JSON document (``meta``). Its
``digest`` is the sha256 of that content (the JSON without the digest, then each array's name, type,
shape and bytes), checked when the file is read, so a damaged or edited profile is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import read_card
from lesionlens.bundle.schema import BundleError
from lesionlens.bundle.split import read_split
from lesionlens.digest import canonical_json, file_digest
from lesionlens.serving.runtime import BundleModel
from lesionlens.upkeep.drift import DriftTests, Sample, median_bandwidth
from lesionlens.upkeep.identity import BundleIdentity
from lesionlens.upkeep.outputs import BATCH, MonitorError, compute_outputs
from lesionlens.upkeep.settings import ReferenceSettings
from lesionlens.upkeep.thresholds import Calibration, calibrate

log = logging.getLogger(__name__)

FORMAT = "lesionlens-reference/1"


@dataclass(frozen=True)
class Projection:
    """Principal components of the reference's embeddings: ``(x - mean) @ components.T``."""

    mean: np.ndarray  # D
    components: np.ndarray  # k x D
    explained: float  # share of the reference's variance the k components keep

    @classmethod
    def fit(cls, x: np.ndarray, dims: int) -> "Projection":
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        k = min(dims, len(s))
        variance = s ** 2
        return cls(mean.astype(np.float32), vt[:k].astype(np.float32), float(variance[:k].sum() / variance.sum()))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) @ self.components.T).astype(np.float64)


@dataclass
class ReferenceProfile:
    bundle: BundleIdentity
    classes: list[str]
    source: str  # which images, in words
    created: str
    sample: Sample  # probabilities, projected embeddings, quality flags of the reference images
    projection: Projection | None
    bandwidth: float | None
    permutations: int
    calibrations: dict[int, Calibration] = field(default_factory=dict)
    digest: str = ""

    def __len__(self) -> int:
        return len(self.sample)

    def tests(self) -> DriftTests:
        return DriftTests(self.sample, self.classes, self.bandwidth, self.permutations)

    def calibration(self, window: int) -> Calibration:
        if window not in self.calibrations:
            sizes = ", ".join(str(w) for w in sorted(self.calibrations)) or "none"
            raise MonitorError(f"the reference has no thresholds for windows of {window} cases (it has: {sizes}); "
                               f"make it again with `lesionlens monitor reference ... --windows {window}`")
        return self.calibrations[window]

    def class_mix(self) -> dict[str, int]:
        counts = np.bincount(self.sample.predicted, minlength=len(self.classes))
        return {c: int(n) for c, n in zip(self.classes, counts)}

    def meta(self) -> dict:
        return {
            "format": FORMAT, "bundle": self.bundle.to_dict(), "classes": self.classes, "source": self.source,
            "created": self.created, "images": len(self), "permutations": self.permutations,
            "embeddings": None if self.projection is None else {
                "dims": int(self.projection.components.shape[0]), "of": int(self.projection.components.shape[1]),
                "explained_variance": round(self.projection.explained, 4), "bandwidth": self.bandwidth},
            "class_mix": self.class_mix(), "quality_rate": float(self.sample.flagged.mean()) if len(self) else 0.0,
            "calibrations": {str(w): c.to_dict() for w, c in sorted(self.calibrations.items())},
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"probabilities": self.sample.probabilities.astype(np.float64), "flagged": self.sample.flagged}
        if self.projection is not None:
            out |= {"embeddings": self.sample.embeddings.astype(np.float64), "pca_mean": self.projection.mean,
                    "pca_components": self.projection.components}
        return out

    def save(self, path: str | Path) -> Path:
        """Write the profile atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = self.arrays()
        meta = self.meta()
        self.digest = content_digest(meta, arrays)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta | {"digest": self.digest})), **arrays)
        os.replace(tmp, path)
        return path

    def summary_lines(self) -> list[str]:
        m = self.meta()
        lines = [f"reference profile {self.digest[:16]} of {self.bundle.name} ({self.bundle.digest[:16]}): "
                 f"{len(self)} images ({self.source})",
                 "  predicted classes: " + ", ".join(f"{c} {n}" for c, n in m["class_mix"].items()),
                 f"  quality-flag rate {m['quality_rate']:.3f}"]
        e = m["embeddings"]
        lines.append(f"  embeddings: {e['dims']} principal components of {e['of']} ({e['explained_variance']:.0%} of "
                     f"the variance), kernel width {e['bandwidth']:.3g}" if e else
                     "  embeddings: none (the bundle's export has no feature maps); that test is left out")
        for w, c in sorted(self.calibrations.items()):
            thresholds = ", ".join(f"{t} p < {v:.4g}" for t, v in c.thresholds.items())
            lines.append(f"  windows of {w}: {thresholds} (false alarms in {c.draws} in-distribution windows: "
                         f"{c.false_alarms['any']:.1%}, target {c.target:.0%})")
        return lines


def content_digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(canonical_json({k: v for k, v in meta.items() if k != "digest"}))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_reference(path: str | Path) -> ReferenceProfile:
    """Read a profile and check its digest; every problem is refused naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MonitorError(f"{path}: no reference profile there; make one with `lesionlens monitor reference BUNDLE "
                           f"--out {path}`")
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {k: f[k] for k in f.files if k != "meta"}
    except (OSError, ValueError, KeyError) as e:
        raise MonitorError(f"{path}: not a readable reference profile: {e}") from e
    if meta.get("format") != FORMAT:
        raise MonitorError(f"{path}: not a reference profile of this LesionLens (format {meta.get('format')!r}, "
                           f"expected {FORMAT!r})")
    if content_digest(meta, arrays) != meta.get("digest"):
        raise MonitorError(f"{path}: its content does not match its digest: the file was damaged or edited; "
                           "make the reference again")
    projection = None
    if "pca_components" in arrays:
        projection = Projection(arrays["pca_mean"], arrays["pca_components"], meta["embeddings"]["explained_variance"])
    sample = Sample(arrays["probabilities"], arrays.get("embeddings"), arrays["flagged"].astype(bool))
    return ReferenceProfile(
        bundle=BundleIdentity(**meta["bundle"]), classes=meta["classes"], source=meta["source"],
        created=meta["created"], sample=sample, projection=projection,
        bandwidth=meta["embeddings"]["bandwidth"] if meta["embeddings"] else None,
        permutations=meta["permutations"],
        calibrations={int(w): Calibration.from_dict(c) for w, c in meta["calibrations"].items()},
        digest=meta["digest"])


@dataclass(frozen=True)
class ReferenceImages:
    names: list[str]  # image ids, for errors
    paths: list[Path]
    source: str  # in words: which images and why the model did not train on them


def reference_images(bundle: str | Path, data: str | Path | None = None) -> ReferenceImages:
    """The images a profile is made of. Without ``data``: the bundle's validation partition, as its
    split file records it (refused where training saw it too: ``train_on_val``). With ``data`` (any
    layout ``--data`` reads): its images, less those the bundle trained on (by content hash, against
    the split file's training rows, ``Card.training_rows``)."""
    card = read_card(bundle)
    split = card.file("split")
    if split is None:
        raise MonitorError(f"{card.path}: the bundle has no split file, so which images it trained on is unknown")
    try:
        rows = read_split(split)
    except BundleError as e:
        raise MonitorError(str(e)) from e
    if data is None:
        if "val" in card.trained_partitions:
            raise MonitorError(f"{card.path}: the bundle trained on its validation images too (train_on_val); give "
                               "images it did not train on with --data")
        val = [r for r in rows if r.partition == "val"]
        if not val:
            raise MonitorError(f"{split}: no validation images (the bundle trained on all of its data); give images "
                               "it did not train on with --data")
        missing = [r.path for r in val if not Path(r.path).is_file()]
        if missing:
            raise MonitorError(f"{split}: {len(missing)} of its {len(val)} validation images are not where it says "
                               f"(first: {missing[0]}); give their folder with --data")
        return ReferenceImages([r.image_id for r in val], [Path(r.path) for r in val],
                               f"validation partition of {card.name}/{split.name}, {len(val)} images")
    from lesionlens.data.load import (
        read_table,  # pandas: the reference is made where the training install is
    )

    table = read_table(data)
    if table.bad_rows:
        raise MonitorError(f"{data}: {len(table.bad_rows)} unreadable rows; first: {table.issues[0]}")
    trained = {r.sha256 for r in card.training_rows() if r.sha256}
    names, paths, left_out = [], [], 0
    for image_id, path in zip(table.frame["image_id"], table.paths):
        if file_digest(path) in trained:
            left_out += 1
            continue
        names.append(str(image_id))
        paths.append(Path(path))
    if not paths:
        raise MonitorError(f"{data}: the bundle trained on all of its {len(table)} images; a reference must be "
                           "data it did not train on")
    return ReferenceImages(names, paths, f"{Path(data).name}: {len(paths)} images the bundle did not train on"
                           + (f" ({left_out} it trained on left out)" if left_out else ""))


def build_reference(bundle: str | Path, images: ReferenceImages, settings: ReferenceSettings = ReferenceSettings(),
                    threads: int = 1) -> ReferenceProfile:
    """The bundle's outputs on ``images`` and the thresholds for each window size; says what the
    outputs will cost once the first batch is timed."""
    identity = BundleIdentity.of(bundle)
    model = BundleModel(bundle, threads=threads)
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done < total and done <= BATCH:
            spent = time.perf_counter() - started
            log.info("the outputs on %d images: about %.0f s (%.1f s for the first %d)", total, spent * total / done,
                     spent, done)

    outputs = compute_outputs(model, images.paths, images.names, progress=progress)
    log.info("thresholds for windows of %s cases, %d in-distribution windows each",
             ", ".join(str(w) for w in settings.windows), settings.draws)
    return profile_of(identity, model.classes, images.source, outputs.probabilities, outputs.embeddings,
                      outputs.flagged, settings)


def profile_of(identity: BundleIdentity, classes: list[str], source: str, probabilities: np.ndarray,
               embeddings: np.ndarray | None, flagged: np.ndarray,
               settings: ReferenceSettings = ReferenceSettings()) -> ReferenceProfile:
    """A profile from outputs already computed (what the benchmark and the tests call)."""
    n = len(probabilities)
    windows = settings.windows
    usable = [w for w in windows if n >= 2 * w]
    if not usable:
        raise MonitorError(f"{source}: {n} reference images cannot calibrate windows of {min(windows)} cases or more "
                           "(calibrating compares each window with the rest of the reference: it needs twice the "
                           "window); use more images or smaller --windows")
    if len(usable) < len(windows):
        log.warning("%d reference images: no thresholds for windows of %s cases (it needs twice the window)", n,
                    ", ".join(str(w) for w in windows if w not in usable))
    projection = bandwidth = None
    projected = None
    if embeddings is not None:
        projection = Projection.fit(embeddings.astype(np.float64), settings.pca_dims)
        projected = projection(embeddings)
        bandwidth = median_bandwidth(projected, seed=settings.seed)
    profile = ReferenceProfile(identity, list(classes), source, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               Sample(np.asarray(probabilities, np.float64), projected, np.asarray(flagged, bool)),
                               projection, bandwidth, settings.permutations)
    tests = profile.tests()
    for w in usable:
        profile.calibrations[w] = calibrate(tests, w, settings.draws, settings.target, settings.seed)
    profile.digest = content_digest(profile.meta(), profile.arrays())
    return profile
