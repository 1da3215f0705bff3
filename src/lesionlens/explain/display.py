"""Shared by the figures of :mod:`lesionlens.explain`: scaling a raw array for display, and writing a
matplotlib figure as a PNG (Agg backend: files only, no display on servers and CI).

Scaling is for display only; every metric reads the raw arrays.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 110  # as lesionlens.evaluation.plots


def display(values: np.ndarray) -> np.ndarray:
    """``values`` min-max scaled to [0, 1] for display (a constant map shows as 0)."""
    values = np.asarray(values, dtype=np.float64)
    low, span = values.min(), np.ptp(values)
    return (values - low) / span if span > 0 else np.zeros_like(values)


def attribution_display(values: np.ndarray) -> np.ndarray:
    """A raw map scaled to [0, 1] for drawing: its positive part (what raises the class's score)
    over its 99.5th percentile, so a few extreme pixels of a gradient map do not wash out the rest."""
    positive = np.maximum(np.asarray(values, np.float64), 0.0)
    top = np.percentile(positive, 99.5) if positive.size else 0.0
    if top <= 0:
        top = positive.max() if positive.size else 0.0
    return np.clip(positive / top, 0.0, 1.0) if top > 0 else np.zeros_like(positive)


def save_figure(fig: plt.Figure, path: Path, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` (its folder made if needed) and close it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches=None if tight else "tight")
    plt.close(fig)
    return path
