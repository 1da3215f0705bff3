"""Is a map faithful to the model? Deletion and insertion curves (Petsiuk et al. 2018, RISE).

Deletion removes the pixels a map ranks most important first, in steps, and follows the explained
class's probability: a faithful map makes it fall fast (a low area under the curve). Insertion
starts from the image with everything removed and puts the most important pixels back first: the
probability should rise fast (a high area). "Removed" means replaced by a strongly blurred copy of
the image (Gaussian, sigma = side / 10), not by black, so the network sees a smooth image rather
than black holes it never met in training (RISE's insertion uses the same blur).

Every method is compared on the same images with two maps that know nothing of the model: random
noise, and a centred Gaussian (dermoscopy centres the lesion, so "look at the middle" is a strong
guess). The comparison is paired: per image, the method's AUC minus the baseline's, with a
bootstrap interval of the mean difference; deletion wants it below 0, insertion above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionlens.evaluation.bootstrap import Interval, mean_interval
from lesionlens.explain.attribution import Maps
from lesionlens.explain.subject import Subject

STEPS = 16  # fractions 0, 1/16, ..., 1 of the pixels
BLUR_SIGMA = 0.1  # of the side
KINDS = ("deletion", "insertion")


@dataclass
class Curves:
    """One method's curves: ``probability[kind]`` is N x (STEPS + 1)."""

    method: str
    fractions: np.ndarray
    probability: dict[str, np.ndarray]

    def auc(self, kind: str) -> np.ndarray:
        """Per image, the area under the curve over the fraction of pixels moved (0..1)."""
        p = self.probability[kind]
        return ((p[:, 1:] + p[:, :-1]) / 2 * np.diff(self.fractions)).sum(axis=1)


@dataclass
class Comparison:
    method: str
    baseline: str
    kind: str
    difference: Interval  # mean over images of AUC(method) - AUC(baseline)

    @property
    def beats(self) -> bool:
        """Deletion: the whole interval below 0; insertion: above."""
        d = self.difference
        return d.high < 0 if self.kind == "deletion" else d.low > 0

    def to_dict(self) -> dict:
        return {"method": self.method, "baseline": self.baseline, "kind": self.kind,
                "difference": self.difference.to_dict(), "beats_baseline": self.beats}


@dataclass
class Faithfulness:
    n_images: int
    curves: dict[str, Curves]
    comparisons: list[Comparison]
    aucs: dict[str, dict[str, Interval]] = field(default_factory=dict)  # method -> kind -> mean AUC

    def to_dict(self) -> dict:
        return {"n_images": self.n_images, "steps": STEPS, "blur_sigma_of_side": BLUR_SIGMA,
                "auc": {m: {k: v.to_dict() for k, v in kinds.items()} for m, kinds in self.aucs.items()},
                "comparisons": [c.to_dict() for c in self.comparisons],
                "curves": {m: {k: c.probability[k].mean(axis=0).round(5).tolist() for k in KINDS}
                           for m, c in self.curves.items()}}

    def lines(self) -> list[str]:
        out = [f"faithfulness on {self.n_images} images (deletion: lower is better; insertion: higher)",
               f"  {'method':<22}{'deletion AUC':<26}{'insertion AUC':<26}"]
        for m, kinds in self.aucs.items():
            out.append(f"  {m:<22}{str(kinds['deletion']):<26}{str(kinds['insertion']):<26}")
        for c in self.comparisons:
            verdict = "beats it" if c.beats else "does NOT beat it"
            out.append(f"  {c.method} vs {c.baseline}, {c.kind}: AUC difference {c.difference} -> {verdict}")
        return out

    def write_figures(self, out: str | Path) -> dict[str, Path]:
        from lesionlens.explain.figures import curves_figure

        out = Path(out)
        return {f"{kind}_curves": curves_figure(self, kind, out / f"{kind}_curves.png") for kind in KINDS}


def blurred(images: np.ndarray) -> np.ndarray:
    """Each image strongly blurred: what "removed" pixels become."""
    from PIL import Image, ImageFilter

    radius = BLUR_SIGMA * images.shape[1]
    return np.stack([np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images])


def order(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """Pixel indices of each map from most to least important; ties broken at random (seeded), so a
    flat region is not removed in scan order."""
    n = len(values)
    flat = values.reshape(n, -1).astype(np.float64)
    jitter = np.random.default_rng(seed).random(flat.shape)
    return np.lexsort((jitter, -flat), axis=1) if flat.size else np.zeros_like(flat, dtype=np.int64)


def curves(subject: Subject, images: np.ndarray, maps: Maps, steps: int = STEPS, batch_size: int = 64,
           seed: int = 0) -> Curves:
    """Deletion and insertion curves of ``maps`` on ``images``: the probability of each map's target
    class after moving 0, 1/steps, ..., all of the pixels in the map's order."""
    n, h, w = maps.values.shape
    if images.shape[:3] != (n, h, w):
        raise ValueError(f"maps {maps.values.shape} do not match images {images.shape}")
    ranks = np.empty((n, h * w), dtype=np.int64)
    ranks[np.arange(n)[:, None], order(maps.values, seed)] = np.arange(h * w)[None]  # rank of each pixel
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * h * w).astype(np.int64)
    base = blurred(images)
    out = {kind: np.empty((n, steps + 1)) for kind in KINDS}
    targets = maps.targets
    for start in range(0, n, max(batch_size // (steps + 1), 1)):
        idx = np.arange(start, min(start + max(batch_size // (steps + 1), 1), n))
        for kind in KINDS:
            batch = []
            for i in idx:
                moved = (ranks[i][None] < counts[:, None]).reshape(steps + 1, h, w, 1)  # steps+1 masks
                keep, fill = (images[i], base[i]) if kind == "deletion" else (base[i], images[i])
                batch.append(np.where(moved, fill[None], keep[None]))
            probs = subject.probabilities(np.concatenate(batch), batch_size)
            probs = probs.reshape(len(idx), steps + 1, -1)
            out[kind][idx] = probs[np.arange(len(idx)), :, targets[idx]]
    return Curves(maps.method, fractions, out)


def compare(all_curves: dict[str, Curves], baselines: tuple[str, ...] = ("random", "centre"),
            n_resamples: int = 2000, seed: int = 0) -> Faithfulness:
    """Every non-baseline method against every baseline, per kind, paired over images."""
    n = len(next(iter(all_curves.values())).probability["deletion"])
    aucs = {m: {k: mean_interval(c.auc(k), n_resamples=n_resamples, seed=seed) for k in KINDS} for m, c in all_curves.items()}
    comparisons = [Comparison(m, b, k, mean_interval(c.auc(k) - all_curves[b].auc(k), n_resamples=n_resamples, seed=seed))
                   for m, c in all_curves.items() if m not in baselines
                   for b in baselines if b in all_curves for k in KINDS]
    return Faithfulness(n, all_curves, comparisons, aucs)
