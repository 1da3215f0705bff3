"""How well predicted lesion masks match the true ones: per-image Jaccard, Dice and HD95, their
summary with bootstrap intervals, and paired comparisons of two models on the same images.

Per image (true mask T, predicted mask P, N x H x W bool):
- Jaccard |T & P| / |T | P| and Dice 2 |T & P| / (|T| + |P|);
- HD95, the 95th percentile of the symmetric surface distance, as medpy's ``hd95`` defines it: the
  surfaces are the pixels one erosion by the 4-connected cross removes, each surface pixel's
  distance to the other mask's surface is found by ``scipy.ndimage.distance_transform_edt``, and the
  percentile is taken over the union of both directions' distances. (MONAI's
  ``compute_hausdorff_distance(percentile=95)`` takes the larger of the two directions' 95th
  percentiles instead, which is never smaller.) In pixels, or in mm given ``mm_per_pixel``.

Conventions for empty masks, the same in every figure and counted in the summary:
- both empty (no lesion, none predicted): Jaccard 1, Dice 1, HD95 0;
- exactly one empty: Jaccard 0, Dice 0, HD95 undefined (NaN). Such an image is left out of the
  HD95 figures only, which say how many were left out; it stays in every Jaccard and Dice figure.

The summary: the mean per-image Jaccard (ISIC 2017's ranking figure), the thresholded Jaccard (ISIC
2018's: a per-image Jaccard below 0.65 counts as 0), the mean Dice, the pooled Jaccard (all pixels of
all images pooled into one intersection over one union: what many papers report, and not the ISIC
figure), median and mean HD95 over the images where it is defined, and the failure share (Jaccard
below 0.65); each with a seeded percentile bootstrap interval over images, all figures computed on
the same resamples.

Torch-free (numpy and scipy): the server may score masks too.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from scipy import ndimage

from lesionlens.evaluation.bootstrap import Difference, Interval, bootstrap_p_value, mean_interval, percentile_interval
from lesionlens.evaluation.mask_ops import binary_masks, boundary

FAILURE_BELOW = 0.65  # ISIC 2018 Task 1: a Jaccard below this is a failure and scores 0
PER_IMAGE = ("jaccard", "dice", "thresholded_jaccard", "hd95")  # what compare_segmentations can compare
FIGURES = {  # the summary's figures, in the order they are shown ({unit}: px or mm)
    "mean_jaccard": "mean per-image Jaccard (ISIC 2017 ranking)",
    "thresholded_jaccard": f"thresholded Jaccard (ISIC 2018: below {FAILURE_BELOW:g} counts as 0)",
    "mean_dice": "mean per-image Dice",
    "pooled_jaccard": "pooled Jaccard (all pixels pooled; not the ISIC figure)",
    "median_hd95": "median HD95 ({unit}), where defined",
    "mean_hd95": "mean HD95 ({unit}), where defined",
    "failure_share": f"failure share (Jaccard < {FAILURE_BELOW:g})",
}


def surface_distances(source: np.ndarray, target: np.ndarray, mm_per_pixel: float | None = None) -> np.ndarray:
    """The distance from each surface pixel of ``source`` (H x W bool) to the nearest surface pixel of
    ``target``; both must be non-empty."""
    s_edge, t_edge = boundary(source), boundary(target)
    # The exact distances need only the box around both surfaces (the nearest target pixel lies in it).
    rows, cols = np.nonzero(s_edge | t_edge)
    box = np.s_[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    sampling = None if mm_per_pixel is None else (mm_per_pixel, mm_per_pixel)
    return ndimage.distance_transform_edt(~t_edge[box], sampling=sampling)[s_edge[box]]


def hd95(truth: np.ndarray, predicted: np.ndarray, mm_per_pixel: float | None = None) -> float:
    """The 95th-percentile symmetric Hausdorff distance of two H x W bool masks (see the module's
    docstring); 0 when both are empty, NaN when exactly one is."""
    has_t, has_p = bool(truth.any()), bool(predicted.any())
    if not has_t and not has_p:
        return 0.0
    if has_t != has_p:
        return float("nan")
    both = np.concatenate([surface_distances(predicted, truth, mm_per_pixel),
                           surface_distances(truth, predicted, mm_per_pixel)])
    return float(np.percentile(both, 95))


def evaluate_segmentation(truth, predicted, image_ids: list[str] | None = None, threshold: float = 0.5,
                          mm_per_pixel: float | None = None, n_resamples: int = 1000, seed: int = 0,
                          level: float = 0.95, description: str = "") -> SegmentationEvaluation:
    """Score ``predicted`` masks (N x H x W: bool, 0/1, or probabilities thresholded at ``threshold``)
    against the ``truth`` (N x H x W, bool or 0/1), image by image."""
    truth_arr, pred_arr = np.asarray(truth), np.asarray(predicted)
    if truth_arr.ndim != 3 or truth_arr.shape != pred_arr.shape:
        raise ValueError(f"truth {truth_arr.shape} and predictions {pred_arr.shape} must both be N x H x W, "
                         "one mask per image, of the same size")
    n = len(truth_arr)
    if n == 0:
        raise ValueError("there are no images to evaluate")
    ids = [str(i) for i in range(n)] if image_ids is None else [str(i) for i in image_ids]
    if len(ids) != n:
        raise ValueError(f"{len(ids)} image ids for {n} masks")
    if len(set(ids)) != n:
        repeated = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"image ids must be unique; repeated: {', '.join(repeated)}")
    if mm_per_pixel is not None and not (math.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise ValueError(f"mm_per_pixel must be a positive number, got {mm_per_pixel}")
    t = binary_masks(truth_arr, "true mask", ids)
    p = binary_masks(pred_arr, "predicted mask", ids, threshold=threshold)
    return SegmentationEvaluation(
        image_ids=ids, truth=t, predicted=p, intersection=(t & p).sum(axis=(1, 2)), union=(t | p).sum(axis=(1, 2)),
        truth_area=t.sum(axis=(1, 2)), predicted_area=p.sum(axis=(1, 2)),
        hd95=np.array([hd95(a, b, mm_per_pixel) for a, b in zip(t, p)]), threshold=threshold,
        mm_per_pixel=mm_per_pixel, n_resamples=n_resamples, seed=seed, level=level, description=description)


@dataclass
class SegmentationEvaluation:
    """Predicted masks scored against the truth: per-image figures and their summary. Every figure
    is derived from the per-image pixel counts and distances held here, so nothing printed can
    disagree with what is saved."""

    image_ids: list[str]
    truth: np.ndarray  # N x H x W bool
    predicted: np.ndarray  # N x H x W bool, after the threshold
    intersection: np.ndarray  # pixels per image
    union: np.ndarray
    truth_area: np.ndarray
    predicted_area: np.ndarray
    hd95: np.ndarray  # NaN where exactly one mask is empty
    threshold: float = 0.5
    mm_per_pixel: float | None = None
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    description: str = ""

    @property
    def unit(self) -> str:
        return "px" if self.mm_per_pixel is None else "mm"

    @property
    def jaccard(self) -> np.ndarray:
        return np.where(self.union > 0, self.intersection / np.maximum(self.union, 1), 1.0)

    @property
    def dice(self) -> np.ndarray:
        total = self.truth_area + self.predicted_area
        return np.where(total > 0, 2 * self.intersection / np.maximum(total, 1), 1.0)

    @property
    def thresholded_jaccard(self) -> np.ndarray:
        j = self.jaccard
        return np.where(j < FAILURE_BELOW, 0.0, j)

    def values(self, metric: str) -> np.ndarray:
        """One of :data:`PER_IMAGE`, image by image."""
        if metric not in PER_IMAGE:
            raise ValueError(f"unknown per-image metric {metric!r}; choose from {', '.join(PER_IMAGE)}")
        return np.asarray(getattr(self, metric), dtype=np.float64)

    def notes(self) -> list[str]:
        """Per image: "both empty", "truth empty", "prediction empty" or ""."""
        t, p = self.truth_area > 0, self.predicted_area > 0
        return ["both empty" if not a and not b else "truth empty" if not a else "prediction empty" if not b else ""
                for a, b in zip(t, p)]

    @property
    def counts(self) -> dict[str, int]:
        t, p = self.truth_area > 0, self.predicted_area > 0
        return {"images": len(self.image_ids), "both_empty": int((~t & ~p).sum()),
                "hd95_undefined": int((t != p).sum()), "failures": int((self.jaccard < FAILURE_BELOW).sum())}

    @cached_property
    def summary(self) -> dict[str, Interval]:
        """Every figure of :data:`FIGURES` with its bootstrap interval over images (the same
        ``n_resamples`` seeded resamples for all)."""
        n = len(self.image_ids)
        idx = np.random.default_rng(self.seed).integers(0, n, size=(self.n_resamples, n))
        j, hd = self.jaccard, self.hd95
        with warnings.catch_warnings():  # a resample may hold no image with a defined HD95
            warnings.simplefilter("ignore", RuntimeWarning)
            median_hd = np.nanmedian(hd[idx], axis=1) if np.isfinite(hd).any() else np.full(len(idx), np.nan)
            out = {"mean_jaccard": mean_interval(j, idx, self.level),
                   "thresholded_jaccard": mean_interval(self.thresholded_jaccard, idx, self.level),
                   "mean_dice": mean_interval(self.dice, idx, self.level),
                   "pooled_jaccard": percentile_interval(
                       _pooled(self.intersection.sum(), self.union.sum()),
                       _pooled(self.intersection[idx].sum(axis=1), self.union[idx].sum(axis=1)), self.level),
                   "median_hd95": percentile_interval(np.nanmedian(hd) if np.isfinite(hd).any() else np.nan,
                                                      median_hd, self.level),
                   "mean_hd95": mean_interval(hd, idx, self.level),
                   "failure_share": mean_interval((j < FAILURE_BELOW).astype(np.float64), idx, self.level)}
        return out

    def worst(self, k: int = 8) -> list[dict]:
        """The ``k`` images with the lowest Jaccard, worst first (ties in image order)."""
        order = np.argsort(self.jaccard, kind="stable")[:k]
        j, d = self.jaccard, self.dice
        return [{"position": int(i), "image_id": self.image_ids[i], "jaccard": float(j[i]), "dice": float(d[i]),
                 "hd95": _number(self.hd95[i])} for i in order]

    def per_image_rows(self) -> list[dict]:
        """One row per image, for a CSV: its figures, pixel counts and what was empty (HD95 None where
        undefined)."""
        j, d, tj = self.jaccard, self.dice, self.thresholded_jaccard
        return [{"image_id": image_id, "jaccard": float(j[i]), "dice": float(d[i]), "thresholded_jaccard": float(tj[i]),
                 f"hd95_{self.unit}": _number(self.hd95[i]), "truth_pixels": int(self.truth_area[i]),
                 "predicted_pixels": int(self.predicted_area[i]), "intersection_pixels": int(self.intersection[i]),
                 "union_pixels": int(self.union[i]), "failure": bool(j[i] < FAILURE_BELOW), "note": note}
                for i, (image_id, note) in enumerate(zip(self.image_ids, self.notes()))]

    def to_dict(self) -> dict:
        """The summary, the conventions and the worst images, JSON-able (undefined figures are None)."""
        return {"description": self.description, "counts": self.counts, "threshold": self.threshold,
                "unit": self.unit, "mm_per_pixel": self.mm_per_pixel,
                "summary": {name: {key: _number(v) if isinstance(v, float) else v
                                   for key, v in interval.to_dict().items()}
                            for name, interval in self.summary.items()},
                "labels": {name: label.format(unit=self.unit) for name, label in FIGURES.items()},
                "bootstrap": {"resamples": self.n_resamples, "seed": self.seed, "level": self.level,
                              "method": "percentile bootstrap over images"},
                "conventions": {"both_empty": "Jaccard 1, Dice 1, HD95 0",
                                "one_empty": "Jaccard 0, Dice 0, HD95 undefined (left out of the HD95 figures only)",
                                "failure": f"Jaccard < {FAILURE_BELOW}",
                                "hd95": "95th percentile of the union of both directed surface distances (medpy)"},
                "worst": self.worst(10)}

    def lines(self) -> list[str]:
        """The summary as a console table."""
        c = self.counts
        out = [f"Segmentation of {c['images']} image(s)" + (f": {self.description}" if self.description else ""),
               (f"  masks at probability >= {self.threshold:g}; {100 * self.level:g}% intervals: bootstrap over "
                f"images, {self.n_resamples} resamples, seed {self.seed}")]
        for name, label in FIGURES.items():
            out.append(f"  {label.format(unit=self.unit):<58} {self.summary[name]}")
        out.append(f"  {c['failures']} failure(s); HD95 undefined for {c['hd95_undefined']} image(s) (exactly one mask "
                   f"empty: Jaccard and Dice 0); {c['both_empty']} image(s) with both masks empty (Jaccard 1, HD95 0)")
        out.append("  worst: " + ", ".join(f"{w['image_id']} {w['jaccard']:.3f}" for w in self.worst(5)))
        return out

    def save(self, folder: Path) -> dict[str, Path]:
        """``segmentation.json`` (:meth:`to_dict`) and ``per_image.csv`` (:meth:`per_image_rows`) in
        ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": folder / "segmentation.json", "csv": folder / "per_image.csv"}
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2))
        rows = self.per_image_rows()
        with paths["csv"].open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{k: "" if v is None else f"{v:.6f}" if isinstance(v, float) else v
                               for k, v in row.items()} for row in rows])
        return paths


def compare_segmentations(a: SegmentationEvaluation, b: SegmentationEvaluation, metric: str = "jaccard",
                          n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> Difference:
    """Is B better than A on the same images? The mean per-image ``metric`` (one of :data:`PER_IMAGE`)
    of each, and the mean of the per-image differences B - A with its paired bootstrap interval and
    two-sided bootstrap p-value (images resampled together). Images are matched by id; for HD95 only
    images where both define it count (lower is better there)."""
    if set(a.image_ids) != set(b.image_ids):
        only_a, only_b = sorted(set(a.image_ids) - set(b.image_ids)), sorted(set(b.image_ids) - set(a.image_ids))
        raise ValueError(f"a paired comparison needs both evaluations on the same images: {len(only_a)} image(s) only "
                         f"in A (e.g. {', '.join(only_a[:3]) or '-'}), {len(only_b)} only in B "
                         f"(e.g. {', '.join(only_b[:3]) or '-'})")
    order = {image_id: i for i, image_id in enumerate(b.image_ids)}
    va = a.values(metric)
    vb = b.values(metric)[[order[i] for i in a.image_ids]]
    both = np.isfinite(va) & np.isfinite(vb)
    if not both.any():
        raise ValueError(f"no image has a defined {metric} in both evaluations")
    d = vb[both] - va[both]
    idx = np.random.default_rng(seed).integers(0, len(d), size=(n_resamples, len(d)))
    samples = d[idx].mean(axis=1)
    return Difference(float(va[both].mean()), float(vb[both].mean()), percentile_interval(d.mean(), samples, level),
                      bootstrap_p_value(samples), f"paired bootstrap over {len(d)} images ({n_resamples} resamples, "
                      f"seed {seed}) of the mean per-image {metric} difference")


def _pooled(intersection, union):
    """Jaccard of all pixels pooled: total intersection over total union (1 when both are empty)."""
    intersection, union = np.asarray(intersection, np.float64), np.asarray(union, np.float64)
    return np.where(union > 0, intersection / np.maximum(union, 1), 1.0)


def _number(x: float) -> float | None:
    """A figure for JSON: NaN (undefined) becomes None."""
    return None if x is None or not math.isfinite(float(x)) else float(x)
