"""Lesion focus: does an attribution map put its weight on the lesion, more than "look at the
centre" would?

From RAW maps (N x H x W, never normalised) and lesion masks (N x H x W bool, aligned with the
images, :mod:`lesionlens.data.masks`), per image:
- ``mass_share``: the map's mass inside the lesion over its total mass. CAMs are >= 0; a signed map
  (integrated gradients) counts its positive part only (evidence *for* the class), as the result
  says.
- ``lift``: mass share over the lesion's share of the image's area; 1 is what a flat map scores,
  above 1 the map is concentrated on the lesion.
- ``pointing``: the pointing game (Zhang et al. 2016): is the map's maximum within ``tolerance``
  pixels of the lesion? The default tolerance is Zhang's 15 px at 224 px, scaled to the map's side.
  Ties count fractionally (the share of the maximal pixels that hit), the expected score of a random
  tie-break, so a constant map scores the (dilated) lesion's area share and not a free hit.

Lesions sit near the centre of dermoscopic images, so each figure is compared, image by image,
with a centred Gaussian map (``sigma`` a fraction of the side, default 0.25: the disc within one
sigma covers 20% of the image, about an ISIC 2017 lesion's mean area share of 19%), with 95% paired
bootstrap intervals of the mean difference; the same for correct and wrong predictions and for each
true class. Images whose map has no positive mass, or whose mask is empty at the map's size, have
no figures and are counted, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import distance_transform_edt  # noqa: E402

from lesionlens.evaluation.bootstrap import Interval, mean_interval, stratified_indices  # noqa: E402
from lesionlens.explain.baselines import centred_gaussian  # noqa: E402

METRICS = ("mass_share", "lift", "pointing")
METRIC_NAMES = {"mass_share": "mass inside the lesion", "lift": "lift over the lesion's area share",
                "pointing": "pointing game (maximum on the lesion)"}


@dataclass(frozen=True)
class FocusSettings:
    tolerance_at_224: float = 15.0  # pointing-game tolerance in pixels at 224 px (Zhang et al. 2016)
    sigma: float = 0.25  # the centred Gaussian baseline's sigma, as a fraction of the side
    n_resamples: int = 1000
    seed: int = 0
    level: float = 0.95


def focus_figures(maps: np.ndarray, masks: np.ndarray, tolerance: float = 0.0) -> dict[str, np.ndarray]:
    """Per image: ``mass_share``, ``lift``, ``pointing`` (NaN where undefined) and ``area_share``, for
    RAW maps (positive part) and aligned bool masks; ``tolerance`` in pixels for the pointing game."""
    maps, masks = np.asarray(maps, np.float64), np.asarray(masks, bool)
    if maps.ndim != 3 or maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must both be N x H x W, aligned")
    if not np.isfinite(maps).all():
        raise ValueError("the maps hold NaN or infinite values")
    positive = np.maximum(maps, 0.0)
    total = positive.sum(axis=(1, 2))
    area = masks.mean(axis=(1, 2))
    defined = (total > 0) & (area > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(defined, (positive * masks).sum(axis=(1, 2)) / total, np.nan)
        lift = mass / np.where(defined, area, np.nan)
    near = masks if tolerance <= 0 else np.stack([
        distance_transform_edt(~m) <= tolerance if m.any() else m for m in masks])
    top = positive == positive.max(axis=(1, 2), keepdims=True)
    pointing = np.where(defined, (top & near).sum(axis=(1, 2)) / top.sum(axis=(1, 2)), np.nan)
    return {"mass_share": mass, "lift": lift, "pointing": pointing, "area_share": area}


@dataclass(frozen=True)
class FocusGroup:
    """One group's figures: the model's, the centred baseline's, and the paired difference."""

    name: str
    n: int  # images with figures
    model: dict[str, Interval]
    baseline: dict[str, Interval]
    difference: dict[str, Interval]  # model - baseline, paired

    def to_dict(self) -> dict:
        return {"name": self.name, "n": self.n, **{m: {"model": self.model[m].to_dict(),
                                                      "baseline": self.baseline[m].to_dict(),
                                                      "difference": self.difference[m].to_dict()} for m in METRICS}}


@dataclass
class FocusResult:
    groups: list[FocusGroup]  # "all" first, then correct / wrong, then each true class
    per_image: dict[str, np.ndarray]  # the model's figures and area_share, image by image
    n_images: int
    n_undefined: int  # images without figures: a map with no positive mass or an empty mask
    signed: bool  # the maps had negative values; only their positive part was counted
    settings: FocusSettings
    tolerance_px: float
    method: str = "attribution map"
    notes: list[str] = field(default_factory=list)

    def group(self, name: str) -> FocusGroup:
        return next(g for g in self.groups if g.name == name)

    def to_dict(self) -> dict:
        return {"method": self.method, "n_images": self.n_images, "n_undefined": self.n_undefined,
                "signed_maps_positive_part": self.signed, "tolerance_px": self.tolerance_px,
                "baseline": f"centred Gaussian, sigma {self.settings.sigma:g} of the side",
                "bootstrap": {"resamples": self.settings.n_resamples, "seed": self.settings.seed,
                              "level": self.settings.level, "method": "paired percentile bootstrap of the mean"},
                "groups": [g.to_dict() for g in self.groups], "notes": list(self.notes)}

    def lines(self) -> list[str]:
        out = [f"Lesion focus of {self.method} on {self.n_images} image(s) with masks "
               f"(baseline: centred Gaussian, sigma {self.settings.sigma:g} of the side; pointing tolerance "
               f"{self.tolerance_px:.1f} px)"]
        out += [f"  note: {n}" for n in self.notes]
        for g in self.groups:
            out.append(f"  {g.name} (n={g.n}):")
            for m in METRICS:
                d = g.difference[m]
                verdict = ("beats the centre" if d.low > 0 else "worse than the centre" if d.high < 0
                           else "no better than the centre")
                out.append(f"    {METRIC_NAMES[m]:<40} {g.model[m]}  centre {g.baseline[m]}  "
                           f"difference {d.estimate:+.3f} [{d.low:+.3f}, {d.high:+.3f}]: {verdict}")
        return out

    def write_figures(self, out_dir: Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        return {"lesion_focus": plot_focus_bars(self, out_dir / "lesion_focus.png"),
                "lesion_focus_per_image": plot_focus_scatter(self, out_dir / "lesion_focus_per_image.png")}


def lesion_focus(maps: np.ndarray, masks: np.ndarray, y_true: np.ndarray | None = None,
                 y_pred: np.ndarray | None = None, classes: list[str] | None = None,
                 settings: FocusSettings = FocusSettings(), method: str = "attribution map") -> FocusResult:
    """Lesion focus of RAW ``maps`` (N x H x W) against the lesion ``masks`` (N x H x W bool), with the
    centred Gaussian baseline; split by correct / wrong and by true class when ``y_true`` and
    ``y_pred`` (class indices into ``classes``) are given."""
    maps = np.asarray(maps)
    n, h, w = maps.shape
    tolerance = settings.tolerance_at_224 * min(h, w) / 224
    model = focus_figures(maps, masks, tolerance)
    base = focus_figures(centred_gaussian(n, h, w, settings.sigma), masks, tolerance)
    ok = np.isfinite(model["mass_share"])
    groups = [("all", ok)]
    if y_true is not None and y_pred is not None:
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if len(y_true) != n or len(y_pred) != n:
            raise ValueError(f"{n} maps but {len(y_true)} true labels and {len(y_pred)} predictions")
        names = classes or [str(k) for k in range(int(max(y_true.max(), y_pred.max())) + 1)]
        groups += [("correct", ok & (y_true == y_pred)), ("wrong", ok & (y_true != y_pred))]
        groups += [(f"true {names[k]}", ok & (y_true == k)) for k in np.unique(y_true)]
    out = []
    for i, (name, members) in enumerate(groups):
        rows = np.flatnonzero(members)
        if len(rows) == 0:
            continue
        strata = y_true[rows] if name == "all" and y_true is not None else np.zeros(len(rows), int)
        idx = stratified_indices(strata, settings.n_resamples, settings.seed + i)
        model_i = {m: mean_interval(model[m][rows], idx, settings.level) for m in METRICS}
        base_i = {m: mean_interval(base[m][rows], idx, settings.level) for m in METRICS}
        diff_i = {m: mean_interval(model[m][rows] - base[m][rows], idx, settings.level) for m in METRICS}
        out.append(FocusGroup(name, len(rows), model_i, base_i, diff_i))
    signed = bool((maps < 0).any())
    notes = []
    if signed:
        notes.append("the maps are signed: only their positive part (evidence for the class) is counted")
    if (~ok).sum():
        notes.append(f"{int((~ok).sum())} image(s) have no figures: their map has no positive mass or their "
                     "mask is empty at the map's size")
    return FocusResult(out, model, n, int((~ok).sum()), signed, settings, tolerance, method, notes)


def plot_focus_bars(result: FocusResult, path: Path) -> Path:
    """One panel per figure: the model's and the centred baseline's mean per group, with intervals."""
    fig, axes = plt.subplots(1, len(METRICS), figsize=(5 * len(METRICS), 4.2))
    x = np.arange(len(result.groups))
    for ax, m in zip(axes, METRICS):
        for offset, who, colour in ((-0.2, "model", "tab:red"), (0.2, "baseline", "tab:grey")):
            iv = [getattr(g, who)[m] for g in result.groups]
            est = np.array([i.estimate for i in iv])
            err = np.array([[i.estimate - i.low for i in iv], [i.high - i.estimate for i in iv]])
            ax.bar(x + offset, est, 0.4, yerr=err, capsize=3, color=colour,
                   label=result.method if who == "model" else "centred Gaussian")
        if m == "lift":
            ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(x, [f"{g.name}\n(n={g.n})" for g in result.groups], fontsize=8, rotation=30)
        ax.set_title(METRIC_NAMES[m], fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Lesion focus, 95% paired bootstrap intervals ({result.n_images} images)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_focus_scatter(result: FocusResult, path: Path) -> Path:
    """Per image: the map's mass inside the lesion against the lesion's area share; above the
    diagonal the map is concentrated on the lesion (lift > 1)."""
    fig, ax = plt.subplots(figsize=(5.2, 5))
    area, mass = result.per_image["area_share"], result.per_image["mass_share"]
    ok = np.isfinite(mass)
    ax.scatter(area[ok], mass[ok], s=8, alpha=0.6, color="tab:red")
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls="--", label="lift 1 (a flat map)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="lesion's share of the image's area",
           ylabel="map's mass inside the lesion", title=f"{result.method}: per image")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
