"""Figures of ``lesionlens explain``: maps over their images, faithfulness curves, the sanity check.

Maps are drawn normalised (:func:`display`); every number beside them comes from the raw maps.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlens.explain.cam import colorize  # noqa: E402
from lesionlens.explain.display import attribution_display, save_figure  # noqa: E402

if TYPE_CHECKING:
    from lesionlens.explain.faithfulness import Faithfulness
    from lesionlens.explain.sanity import Sanity

ALPHA = 0.5


def overlay(image: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The image with the map's colours blended over it (H x W x 3 uint8)."""
    colours = colorize(attribution_display(values)).astype(np.float64)
    return ((1 - ALPHA) * image.astype(np.float64) + ALPHA * colours).round().clip(0, 255).astype(np.uint8)


def maps_figure(images: np.ndarray, captions: list[str], maps: dict[str, np.ndarray], path: Path,
                layer_note: str = "") -> Path:
    """One row per image: the image (with its caption: truth, probabilities), then each method's
    map over it."""
    n, methods = len(images), list(maps)
    fig, axes = plt.subplots(n, 1 + len(methods), figsize=(2.3 * (1 + len(methods)), 2.5 * n), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 0].set_title(captions[i], fontsize=7)
        for j, m in enumerate(methods):
            axes[i, 1 + j].imshow(overlay(images[i], maps[m][i]))
            if i == 0:
                axes[i, 1 + j].set_title(m + (f"\n{layer_note}" if layer_note and "cam" in m else ""), fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, Path(path))


def curves_figure(result: "Faithfulness", kind: str, path: Path) -> Path:
    """Mean probability of the explained class against the fraction of pixels moved, per method."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for name, c in result.curves.items():
        style = "--" if name in ("random", "centre") else "-"
        auc = result.aucs[name][kind].estimate
        ax.plot(c.fractions, c.probability[kind].mean(axis=0), style, lw=1.8, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlabel("fraction of pixels " + ("removed (blurred), most important first" if kind == "deletion"
                                           else "restored, most important first"))
    ax.set_ylabel("probability of the explained class (mean)")
    ax.set_title(f"{kind} ({result.n_images} images): " + ("lower is better" if kind == "deletion" else "higher is better"))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path))


def sanity_figure(result: "Sanity", path: Path) -> Path:
    """Left: rank correlation with the trained model's maps as blocks are randomised head first;
    right: the first image's map of each method at the trained model and after each step."""
    steps = len(result.blocks)
    shown = sorted({0, *np.linspace(1, steps, min(steps, 5)).round().astype(int).tolist()})
    fig = plt.figure(figsize=(5.5 + 1.6 * len(shown), max(3.6, 1.6 * len(result.methods) + 0.6)))
    grid = fig.add_gridspec(len(result.methods), 1 + len(shown), width_ratios=[3.2] + [1] * len(shown))
    ax = fig.add_subplot(grid[:, 0])
    for m in result.methods:
        r = [1.0] + [s.rank_correlation.estimate for s in m.steps]
        ax.plot(range(steps + 1), r, "o-" if m.method != "guided_backprop" else "s--", ms=3, label=m.method)
    ax.set_xticks(range(steps + 1))
    ax.set_xticklabels(["trained", *result.blocks], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("rank correlation with the trained model's maps")
    ax.set_ylim(-0.1, 1.05)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("cascading randomisation, head first")
    for i, m in enumerate(result.methods):
        for j, k in enumerate(shown):
            a = fig.add_subplot(grid[i, 1 + j])
            a.imshow(attribution_display(m.example_maps[k]), cmap="magma")
            a.set_xticks([])
            a.set_yticks([])
            if i == 0:
                a.set_title("trained" if k == 0 else f"to {result.blocks[k - 1]}", fontsize=7)
            if j == 0:
                a.set_ylabel(m.method, fontsize=7)
    return save_figure(fig, Path(path))
