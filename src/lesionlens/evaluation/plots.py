"""Figures of an :class:`~lesionlens.evaluation.result.Evaluation`: ROC curves and confusion matrices."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlens.data.labels import DX_NAMES, canonical  # noqa: E402
from lesionlens.evaluation import metrics as M  # noqa: E402
from lesionlens.evaluation.result import Evaluation  # noqa: E402


def _label(name: str) -> str:
    """``mel`` -> ``mel (melanoma)``; names that already say what they are stay as they are."""
    return f"{name} ({DX_NAMES[name.lower()]})" if canonical(name) == name.lower() else name


def _grade_letter(auc: float) -> str:
    grade = M.auc_grade(auc)
    return grade.split()[0] if grade else "-"


def plot_roc(ev: Evaluation, path: Path, title: str = "") -> Path:
    """Left: one-vs-rest ROC per class; right: the clinical binary views with the model's
    operating point (its argmax decision) marked."""
    views = ev.binary_views()
    fig, axes = plt.subplots(1, 2 if views else 1, figsize=(13 if views else 7, 6.2), squeeze=False)
    ax = axes[0, 0]
    aucs = ev.class_auc
    colours = plt.get_cmap("tab10")
    for k, name in enumerate(ev.classes):
        if not np.isfinite(aucs[k]):
            continue
        fpr, tpr = M.binary_roc(ev.y_true == k, ev.probs[:, k])
        ax.plot(fpr, tpr, color=colours(k % 10), lw=1.8,
                label=f"{_label(name)}: AUC {aucs[k]:.3f} ({_grade_letter(aucs[k])})")
    _roc_axes(ax, f"One-vs-rest ROC, macro AUC {ev.macro_auc:.3f} ({M.auc_grade(ev.macro_auc)})")
    if views:
        ax = axes[0, 1]
        for i, (name, view) in enumerate(views.items()):
            fpr, tpr = M.binary_roc(view.y_true, view.score)
            colour = ("#c0392b", "#2c3e50")[i % 2]
            ax.plot(fpr, tpr, color=colour, lw=2.2,
                    label=f"{name} vs rest: AUC {view.auc:.3f} ({_grade_letter(view.auc)})")
            s = view.stats
            ax.plot(1 - s.specificity, s.sensitivity, "o", color=colour, ms=8,
                    label=f"  decision: sens {s.sensitivity:.2f}, spec {s.specificity:.2f}")
        _roc_axes(ax, "Clinical questions (score = summed class probabilities)")
    fig.suptitle(title or ev.description, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _roc_axes(ax, title: str) -> None:
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="1 - specificity (false positive rate)",
           ylabel="sensitivity (true positive rate)", title=title)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def plot_confusion(ev: Evaluation, path: Path, title: str = "") -> Path:
    """Counts and row-normalised (each row sums to 100%: the diagonal is each class's sensitivity)."""
    cm, norm = ev.confusion_matrix(), ev.confusion_matrix(normalise=True)
    n = len(ev.classes)
    side = max(5.0, 0.75 * n + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, values, what in ((axes[0], cm, "counts"), (axes[1], norm, "row-normalised (% of true class)")):
        shown = np.nan_to_num(values.astype(float) / max(cm.max(), 1) if what == "counts" else values)
        ax.imshow(shown, cmap="Blues", vmin=0, vmax=1)
        for i in range(n):
            for j in range(n):
                if what == "counts":
                    text = str(cm[i, j])
                else:
                    text = "-" if np.isnan(norm[i, j]) else f"{100 * norm[i, j]:.0f}%"
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if shown[i, j] > 0.55 else "black")
        ax.set_xticks(range(n), ev.classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        ax.set_yticks(range(n), [f"{c} (n={cm[i].sum()})" for i, c in enumerate(ev.classes)])
        ax.set(xlabel="predicted class", ylabel="true class", title=what)
    fig.suptitle(title or f"{ev.description}\naccuracy {ev.accuracy:.3f}, "
                 f"balanced accuracy {ev.balanced_accuracy:.3f}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
