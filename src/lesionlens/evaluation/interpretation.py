"""Figures of the cases a model gets most wrong: a gallery of top losses and the most-confused pairs.

The queries are methods of :class:`~lesionlens.evaluation.result.Evaluation` (``top_losses``,
``most_confused``) and the figures are drawn here, beside them, as fastai's
``ClassificationInterpretation`` keeps both: they describe an evaluation's results. What looks
inside the network (activation maps) is :mod:`lesionlens.explain`.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lesionlens.evaluation.result import Evaluation  # noqa: E402


def plot_top_losses(ev: Evaluation, path: Path, k: int = 16, columns: int = 4, title: str = "") -> Path:
    """The ``k`` worst-predicted images (as the model saw them), each titled with its id, true class,
    predicted class and the probabilities of both."""
    if ev.images is None or ev.rows is None:
        raise ValueError("a top-losses gallery needs the evaluation's decoded images")
    cases = ev.top_losses(k)
    rows = max(1, math.ceil(len(cases) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, 3.7 * rows + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, case in zip(axes.ravel(), cases):
        ax.imshow(ev.images[ev.rows[case["position"]]])
        ax.set_title(f"{case['image_id']}\ntrue {case['true']} (p {case['p_true']:.2f})\n"
                     f"predicted {case['predicted']} (p {case['p_predicted']:.2f})", fontsize=8.5,
                     color="#b03a2e")
    fig.suptitle(title or f"Top losses: the {len(cases)} images the model got most wrong\n{ev.description}",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.6 / (3.7 * rows + 0.6)), h_pad=1.2)
    # photographs: JPEG keeps the file (and the report that embeds it) a tenth of the PNG's size
    fig.savefig(path, dpi=90, pil_kwargs={"quality": 85} if path.suffix.lower() in (".jpg", ".jpeg") else None)
    plt.close(fig)
    return path


def plot_most_confused(ev: Evaluation, path: Path, top: int = 10, title: str = "") -> Path:
    """Horizontal bars of the most frequent (true -> predicted) mistakes, with each pair's share of
    the true class."""
    pairs = ev.most_confused()[:top]
    support = {c: int((ev.y_true == k).sum()) for k, c in enumerate(ev.classes)}
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * max(len(pairs), 2) + 1.6))
    labels = [f"{t} -> {p}" for t, p, _ in pairs][::-1]
    counts = [n for _, _, n in pairs][::-1]
    bars = ax.barh(labels, counts, color="#c0392b")
    for bar, (t, _, n) in zip(bars, pairs[::-1]):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {n} ({100 * n / max(support[t], 1):.0f}% of {t})",
                va="center", fontsize=8.5)
    ax.set(xlabel="images", title=title or "Most-confused pairs (true class -> predicted class)")
    ax.set_xlim(0, max(counts + [1]) * 1.35)
    ax.grid(axis="x", alpha=0.3)
    if not pairs:
        ax.text(0.5, 0.5, "no mistakes", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
