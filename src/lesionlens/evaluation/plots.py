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


def plot_precision_recall(ev: Evaluation, path: Path, title: str = "") -> Path:
    """Precision against recall per class (with average precision, the ISIC ranking's second
    figure) and for the clinical views; the dotted line of each is its prevalence (chance)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve

    views = ev.binary_views()
    curves = [(k, _label(name), ev.y_true == k, ev.probs[:, k]) for k, name in enumerate(ev.classes)]
    panels = [("Per class", curves)]
    if views:
        panels.append(("Clinical questions", [(i, f"{n} vs rest", v.y_true, v.score) for i, (n, v) in enumerate(views.items())]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, (heading, items) in zip(axes[0], panels):
        for k, label, truth, score in items:
            if truth.all() or not truth.any():
                continue
            precision, recall, _ = precision_recall_curve(truth, score)
            ap = average_precision_score(truth, score)
            colour = colours(k % 10) if heading == "Per class" else ("#c0392b", "#2c3e50")[k % 2]
            ax.step(recall, precision, where="post", color=colour, lw=1.8, label=f"{label}: AP {ap:.3f}")
            ax.axhline(truth.mean(), color=colour, ls=":", lw=0.8)
        ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), xlabel="recall (sensitivity)", ylabel="precision (PPV)",
               title=f"{heading} (dotted: prevalence)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title or ev.description, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability(ev: Evaluation, path: Path, bins: int = 15, title: str = "") -> Path:
    """Reliability diagrams of the top-class confidence: before temperature scaling (plain softmax)
    and after (the bundle's temperature). Bars on the diagonal are perfectly calibrated."""
    from scipy.special import softmax

    from lesionlens.evaluation.calibration import brier_score, expected_calibration_error, reliability_bins

    if ev.logits is None:
        raise ValueError("a reliability diagram needs the evaluation's logits")
    panels = [("plain softmax (T = 1)", softmax(ev.logits, axis=1))]
    if ev.temperature != 1.0:
        panels.append((f"temperature-scaled (T = {ev.temperature:.2f})", ev.probs))
    fig, axes = plt.subplots(2, len(panels), figsize=(6 * len(panels), 7.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for col, (heading, probs) in enumerate(panels):
        table = reliability_bins(probs, ev.y_true, bins)
        width = 1.0 / bins
        centres = table["lower"] + width / 2
        filled = table["count"] > 0
        ax = axes[0, col]
        ax.bar(centres[filled], table["accuracy"][filled], width=width * 0.95, color="#3b7dd8", edgecolor="#1f4e8c",
               label="accuracy in bin")
        acc, conf = table["accuracy"][filled], table["confidence"][filled]
        ax.bar(centres[filled], np.abs(conf - acc), bottom=np.minimum(acc, conf), width=width * 0.95, fill=False,
               hatch="///", edgecolor="#c0392b", lw=0.8, label="gap between accuracy and mean confidence")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
        ece = expected_calibration_error(probs, ev.y_true, bins)
        ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy",
               title=f"{heading}\nECE {ece:.3f}, Brier {brier_score(probs, ev.y_true):.3f}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        ax = axes[1, col]
        ax.bar(centres, table["count"], width=width * 0.95, color="#7f8c8d")
        ax.set(xlabel="confidence of the top class", ylabel="images")
        ax.grid(alpha=0.3)
    fig.suptitle(title or ev.description, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_roc_comparison(evaluations: dict[str, Evaluation], path: Path, title: str = "") -> Path:
    """Overlaid ROC curves of several models on the same images: one panel per clinical view
    (or, without views, for the macro-average's classes pooled one-vs-rest)."""
    first = next(iter(evaluations.values()))
    views = list(first.binary_views())
    panels = views or ["macro"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6.2), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, view in zip(axes[0], panels):
        for i, (name, ev) in enumerate(evaluations.items()):
            if view == "macro":
                fpr, tpr = M.binary_roc(np.eye(len(ev.classes), dtype=bool)[ev.y_true].ravel(), ev.probs.ravel())
                label = f"{name}: macro AUC {ev.macro_auc:.3f}"
            else:
                v = ev.binary_views()[view]
                fpr, tpr = M.binary_roc(v.y_true, v.score)
                label = f"{name}: AUC {v.auc:.3f}"
            ax.plot(fpr, tpr, color=colours(i % 10), lw=2, label=label)
        _roc_axes(ax, f"{view} vs rest" if view != "macro" else "all classes, pooled one-vs-rest")
    fig.suptitle(title or f"{len(evaluations)} models on the same {len(first.y_true)} images", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
