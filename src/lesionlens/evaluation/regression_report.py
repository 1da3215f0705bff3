"""A regression evaluation's files: metrics, per-image predictions, predicted-against-true scatter
plots and residual plots (one panel per target), and the worst images."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlens.evaluation.regression import RegressionEvaluation  # noqa: E402

WORST = 20  # images listed in worst.json


def plot_scatter(ev: RegressionEvaluation, path: Path) -> Path:
    """Predicted against true per target, with the identity line and the baseline's constant."""
    k = len(ev.targets)
    fig, axes = plt.subplots(1, k, figsize=(4.6 * k, 4.4), squeeze=False)
    for j, (ax, name) in enumerate(zip(axes[0], ev.targets)):
        y, p = ev.truth[:, j], ev.predicted[:, j]
        f = ev.summary[name]
        low, high = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
        ax.scatter(y, p, s=8, alpha=0.45, edgecolors="none")
        ax.plot([low, high], [low, high], "k--", lw=1, label="predicted = true")
        ax.axhline(ev.baseline[j], color="tab:orange", lw=1, label=f"baseline (training median {ev.baseline[j]:.3g})")
        ax.set(xlabel=f"true {name}", ylabel=f"predicted {name}", xlim=(low, high), ylim=(low, high),
               title=f"{name}: MAE {f['mae']['estimate']:.3g} (baseline {f['baseline_mae']['estimate']:.3g}), "
                     f"R$^2$ {f['r2']['estimate']:.2f}")
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{ev.description} ({len(ev.ids)} images)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_residuals(ev: RegressionEvaluation, path: Path) -> Path:
    """Per target, the residual (predicted - true) against the true value, and their histogram: a
    slope in the first panel is regression to the mean, a shifted histogram is a bias."""
    k = len(ev.targets)
    fig, axes = plt.subplots(2, k, figsize=(4.6 * k, 7.2), squeeze=False)
    for j, name in enumerate(ev.targets):
        y, r = ev.truth[:, j], ev.residuals[:, j]
        ax = axes[0, j]
        ax.scatter(y, r, s=8, alpha=0.45, edgecolors="none")
        ax.axhline(0, color="k", lw=1)
        ax.set(xlabel=f"true {name}", ylabel="predicted - true", title=f"{name}: residuals")
        ax.grid(alpha=0.3)
        ax = axes[1, j]
        ax.hist(r, bins=min(40, max(10, len(r) // 10)), color="tab:blue", alpha=0.8)
        ax.axvline(0, color="k", lw=1)
        ax.axvline(float(np.mean(r)), color="tab:red", lw=1, ls="--", label=f"mean {np.mean(r):+.3g}")
        ax.set(xlabel="predicted - true", ylabel="images")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_regression_report(ev: RegressionEvaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write every file of the evaluation to ``out_dir``; returns name -> path."""
    out = Path(out_dir)
    files = ev.write(out)
    files["scatter"] = plot_scatter(ev, out / "scatter.png")
    files["residuals"] = plot_residuals(ev, out / "residuals.png")
    (out / "worst.json").write_text(json.dumps(ev.worst(WORST), indent=2))
    files["worst"] = out / "worst.json"
    return files
