"""Predicted volume masks against the true ones: Dice and Jaccard per volume, and the object's volume.

Each volume counts the same (the mean of per-volume scores, as the 2D segmentation evaluation and
the ISIC ranking do); a volume with neither a true nor a predicted object scores 1. With the voxel
volume of the preprocessing grid, the object's volume in mm^3 is read off each mask, so a U-Net also
answers "how large is it" (the synthetic volumes' numeric target).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class VolumeMaskEvaluation:
    frame: pd.DataFrame  # one row per volume: id, dice, jaccard, true / predicted voxels (and mm^3)
    description: str = ""

    @property
    def dice(self) -> float:
        return float(self.frame["dice"].mean()) if len(self.frame) else float("nan")

    @property
    def jaccard(self) -> float:
        return float(self.frame["jaccard"].mean()) if len(self.frame) else float("nan")

    def summary(self) -> dict:
        s = {"n_volumes": int(len(self.frame)), "dice": round(self.dice, 4), "jaccard": round(self.jaccard, 4),
             "dice_min": round(float(self.frame["dice"].min()), 4) if len(self.frame) else None}
        if "true_mm3" in self.frame:
            error = (self.frame["predicted_mm3"] - self.frame["true_mm3"]).abs() / self.frame["true_mm3"].clip(lower=1)
            s["volume_relative_error_median"] = round(float(error.median()), 4)
        return s

    def write(self, folder: Path) -> dict[str, Path]:
        """``per_volume.csv`` and ``metrics.json`` in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        table, metrics = folder / "per_volume.csv", folder / "metrics.json"
        self.frame.to_csv(table, index=False)
        metrics.write_text(json.dumps({"description": self.description, **self.summary()}, indent=2))
        return {"per_volume": table, "metrics": metrics}


def evaluate_volume_masks(truth: np.ndarray, predicted: np.ndarray, ids: list[str] | None = None,
                          voxel_mm3: float | None = None, description: str = "") -> VolumeMaskEvaluation:
    """Score ``predicted`` masks (N x D x H x W, bool or 0/1) against the ``truth``, volume by volume."""
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    if truth.ndim != 4 or truth.shape != predicted.shape:
        raise ValueError(f"truth {truth.shape} and predictions {predicted.shape} must both be N x D x H x W")
    n = len(truth)
    t, p = truth.reshape(n, -1), predicted.reshape(n, -1)
    inter, union = (t & p).sum(1), (t | p).sum(1)
    sizes = t.sum(1) + p.sum(1)
    frame = pd.DataFrame({
        "id": ids if ids is not None else [str(i) for i in range(n)],
        "dice": np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), 1.0),
        "jaccard": np.where(union > 0, inter / np.maximum(union, 1), 1.0),
        "true_voxels": t.sum(1), "predicted_voxels": p.sum(1),
    })
    if voxel_mm3 is not None:
        frame["true_mm3"] = frame["true_voxels"] * voxel_mm3
        frame["predicted_mm3"] = frame["predicted_voxels"] * voxel_mm3
    return VolumeMaskEvaluation(frame, description)
