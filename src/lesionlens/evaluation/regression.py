"""How close predicted numbers are to the true ones: MAE, RMSE and R^2 per target with bootstrap
intervals, against the predict-the-median baseline, and the box IoU when the targets are a box.

Per target k over the N images (truth y, prediction p):
- MAE = mean |p - y|, RMSE = sqrt(mean (p - y)^2), in the target's own units;
- R^2 = 1 - sum (p - y)^2 / sum (y - mean y)^2 on the evaluated images (0: no better than their
  own mean, negative: worse);
- the baseline predicts the training set's median for every image (the constant that minimises the
  training MAE); ``mae_vs_baseline`` is the paired difference of the absolute errors (model -
  baseline, negative = the model is better) with its interval and two-sided bootstrap p-value.

With ``box`` the four targets are a box's corners (x0, y0, x1, y1, fractions of the image side): a
predicted box is put in order (min, max) and clipped to the image before its IoU with the true box
is taken, and the summary adds the mean IoU and the share of boxes with IoU >= 0.5 and >= 0.75.

Every interval is a seeded percentile bootstrap over images, all figures on the same resamples.
Torch-free (numpy and scipy).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from lesionlens.evaluation.bootstrap import Interval, bootstrap_p_value, mean_interval, percentile_interval

BOX_COLUMNS = 4  # x0, y0, x1, y1
IOU_LEVELS = (0.5, 0.75)


@dataclass
class RegressionEvaluation:
    """Predicted against true values of ``targets`` for the images ``ids`` (N x K arrays)."""

    targets: list[str]
    truth: np.ndarray
    predicted: np.ndarray
    baseline: np.ndarray  # K: the constant the baseline predicts (the training median)
    ids: list[str]
    description: str = ""
    box: bool = False
    n_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        self.truth = np.asarray(self.truth, dtype=np.float64).reshape(len(self.ids), -1)
        self.predicted = np.asarray(self.predicted, dtype=np.float64).reshape(len(self.ids), -1)
        self.baseline = np.asarray(self.baseline, dtype=np.float64).reshape(-1)
        k = len(self.targets)
        if self.truth.shape[1] != k or self.predicted.shape[1] != k or len(self.baseline) != k:
            raise ValueError(f"{k} targets, but truth {self.truth.shape}, predictions {self.predicted.shape} and "
                             f"baseline {self.baseline.shape}")
        if self.box and k != BOX_COLUMNS:
            raise ValueError(f"a box has {BOX_COLUMNS} targets (x0, y0, x1, y1), got {k}: {self.targets}")
        if len(self.ids) < 2:
            raise ValueError("a regression evaluation needs at least 2 images")

    @property
    def residuals(self) -> np.ndarray:
        """Predicted - true, N x K."""
        return self.predicted - self.truth

    @cached_property
    def _idx(self) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        return rng.integers(0, len(self.ids), size=(self.n_resamples, len(self.ids)))

    def figures(self, k: int) -> dict[str, object]:
        """Target ``k``'s MAE, RMSE, R^2, the baseline's MAE and the paired difference."""
        y, p, idx = self.truth[:, k], self.predicted[:, k], self._idx
        error, base_error = np.abs(p - y), np.abs(self.baseline[k] - y)
        sq = (p - y) ** 2
        rmse_samples = np.sqrt(sq[idx].mean(axis=1))
        yr = y[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            r2_samples = 1 - sq[idx].sum(axis=1) / ((yr - yr.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        difference = error - base_error
        return {
            "mae": mean_interval(error, idx),
            "rmse": percentile_interval(float(np.sqrt(sq.mean())), rmse_samples),
            "r2": percentile_interval(r2(y, p), r2_samples),
            "baseline_mae": mean_interval(base_error, idx),
            "mae_vs_baseline": mean_interval(difference, idx),
            "p_value": bootstrap_p_value(difference[idx].mean(axis=1)),
        }

    @cached_property
    def ious(self) -> np.ndarray | None:
        """Per image, the predicted box's IoU with the true one (``box`` only)."""
        return box_iou(self.predicted, self.truth) if self.box else None

    @cached_property
    def summary(self) -> dict[str, dict]:
        """Per target (and ``all``, the mean over targets where there are several): the figures as
        plain dicts; with ``box``, ``box`` holds the IoU figures."""
        out = {name: _plain(self.figures(k)) for k, name in enumerate(self.targets)}
        if len(self.targets) > 1:
            error = np.abs(self.residuals).mean(axis=1)
            base = np.abs(self.baseline - self.truth).mean(axis=1)
            out["all"] = _plain({"mae": mean_interval(error, self._idx),
                                 "baseline_mae": mean_interval(base, self._idx),
                                 "mae_vs_baseline": mean_interval(error - base, self._idx),
                                 "p_value": bootstrap_p_value((error - base)[self._idx].mean(axis=1))})
        if self.box:
            iou = self.ious
            out["box"] = _plain({"mean_iou": mean_interval(iou, self._idx),
                                 **{f"share_iou_{level:g}": mean_interval((iou >= level).astype(float), self._idx)
                                    for level in IOU_LEVELS}})
        return out

    def lines(self) -> list[str]:
        """The summary for a terminal: per target, the model's figures and the baseline's."""
        out = [f"{self.description} ({len(self.ids)} images; 95% bootstrap intervals):"]
        for name in self.targets:
            f = self.summary[name]
            out.append(f"  {name}: MAE {_interval(f['mae'])}, RMSE {_interval(f['rmse'])}, R^2 {_interval(f['r2'])}")
            out.append(f"    predict-the-median baseline ({self.baseline[self.targets.index(name)]:.4g}): MAE "
                       f"{_interval(f['baseline_mae'])}; model - baseline {_interval(f['mae_vs_baseline'], '+.3g')}, "
                       f"p {f['p_value']:.3g}")
        if self.box:
            b = self.summary["box"]
            out.append(f"  box IoU {_interval(b['mean_iou'])}; IoU >= 0.5: {_interval(b['share_iou_0.5'])}, "
                       f">= 0.75: {_interval(b['share_iou_0.75'])}")
        return out

    def worst(self, k: int = 10) -> list[dict]:
        """The ``k`` images with the largest mean absolute error (the top losses)."""
        error = np.abs(self.residuals).mean(axis=1)
        order = np.argsort(-error, kind="stable")[:k]
        return [{"image_id": self.ids[i], "error": float(error[i]),
                 **{f"true_{t}": float(self.truth[i, j]) for j, t in enumerate(self.targets)},
                 **{f"predicted_{t}": float(self.predicted[i, j]) for j, t in enumerate(self.targets)}}
                for i in order]

    def to_dict(self) -> dict:
        return {"description": self.description, "n_images": len(self.ids), "targets": list(self.targets),
                "baseline": {"kind": "training median", "values": self.baseline.tolist()},
                "box": self.box, "n_resamples": self.n_resamples, "seed": self.seed, "summary": self.summary}

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """``metrics.json`` and ``predictions.csv`` (one row per image: true, predicted, residual)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(self.to_dict(), indent=2))
        with (out / "predictions.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", *(f"{kind}_{t}" for t in self.targets for kind in ("true", "predicted", "residual")),
                        *(["box_iou"] if self.box else [])])
            for i, image_id in enumerate(self.ids):
                values = [f"{v:.6g}" for k in range(len(self.targets))
                          for v in (self.truth[i, k], self.predicted[i, k], self.residuals[i, k])]
                w.writerow([image_id, *values, *([f"{self.ious[i]:.4f}"] if self.box else [])])
        return {"metrics": out / "metrics.json", "predictions": out / "predictions.csv"}


def r2(y: np.ndarray, p: np.ndarray) -> float:
    """The coefficient of determination of ``p`` for ``y`` (NaN when ``y`` is constant)."""
    total = float(((y - y.mean()) ** 2).sum())
    return float("nan") if total == 0 else 1 - float(((p - y) ** 2).sum()) / total


def box_iou(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per row, the IoU of two boxes (x0, y0, x1, y1) in fractions of the side; each predicted box
    is put in order and clipped to [0, 1] first (a network may give x1 < x0)."""
    p = np.clip(np.asarray(predicted, dtype=np.float64), 0.0, 1.0)
    t = np.asarray(truth, dtype=np.float64)
    px0, px1 = np.minimum(p[:, 0], p[:, 2]), np.maximum(p[:, 0], p[:, 2])
    py0, py1 = np.minimum(p[:, 1], p[:, 3]), np.maximum(p[:, 1], p[:, 3])
    iw = np.clip(np.minimum(px1, t[:, 2]) - np.maximum(px0, t[:, 0]), 0, None)
    ih = np.clip(np.minimum(py1, t[:, 3]) - np.maximum(py0, t[:, 1]), 0, None)
    inter = iw * ih
    union = (px1 - px0) * (py1 - py0) + (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _interval(d: dict, spec: str = ".3g") -> str:
    return f"{d['estimate']:{spec}} [{d['low']:{spec}}, {d['high']:{spec}}]"


def _plain(figures: dict) -> dict:
    return {k: v.to_dict() if isinstance(v, Interval) else v for k, v in figures.items()}
