"""The segmentation report: figures of a :class:`~lesionlens.evaluation.segmentation.SegmentationEvaluation`
and one self-contained HTML page of them.

``write_segmentation_report(evaluation, images, out_dir)`` writes ``segmentation.json`` (the summary),
``per_image.csv`` (one row per image), ``jaccard_histogram.png`` (the per-image Jaccard with the 0.65
failure line), ``worst_masks.png`` (the worst images with the true outline in green and the
predicted one in magenta) and ``report.html``, every figure embedded as a data URI like the
evaluation report, so the page opens anywhere on its own.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from lesionlens import __version__  # noqa: E402
from lesionlens.evaluation.report import data_uri, template_environment  # noqa: E402
from lesionlens.evaluation.segmentation import FAILURE_BELOW, SegmentationEvaluation  # noqa: E402

TEMPLATE = "segmentation.html.j2"
TRUTH_COLOUR = "#2ecc40"  # green: the reference outline
PREDICTED_COLOUR = "#ff00c8"  # magenta: stands out on skin and on green
GALLERY_SIZE = 12


def plot_jaccard_histogram(ev: SegmentationEvaluation, path: Path) -> Path:
    """The per-image Jaccard in bins of 0.05, failures (below 0.65) in red, with the failure line
    and the mean."""
    j = ev.jaccard
    edges = np.linspace(0.0, 1.0, 21)
    counts, _ = np.histogram(j, bins=edges)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = ["#c0392b" if right <= FAILURE_BELOW + 1e-9 else "#34495e" for right in edges[1:]]
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colours, edgecolor="white")
    ax.axvline(FAILURE_BELOW, color="#c0392b", ls="--", lw=1.5,
               label=f"failure below {FAILURE_BELOW} ({ev.counts['failures']} of {len(j)} images)")
    mean = ev.summary["mean_jaccard"]
    ax.axvline(mean.estimate, color="#2980b9", lw=2, label=f"mean {mean}")
    ax.set(xlim=(0, 1), xlabel="per-image Jaccard (intersection over union)", ylabel="images",
           title=f"Per-image Jaccard on {len(j)} images" + (f"\n{ev.description}" if ev.description else ""))
    ax.legend(loc="upper left", fontsize=9)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_worst_masks(ev: SegmentationEvaluation, images: np.ndarray, path: Path, k: int = GALLERY_SIZE) -> Path:
    """The ``k`` images with the lowest Jaccard, worst first: each image with the true outline in green
    and the predicted one in magenta, captioned with its id, Jaccard and Dice."""
    worst = ev.worst(k)
    cols = min(4, len(worst))
    rows = -(-len(worst) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.7 * rows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, w in zip(axes.ravel(), worst):
        i = w["position"]
        ax.imshow(images[i])
        for mask, colour in ((ev.truth[i], TRUTH_COLOUR), (ev.predicted[i], PREDICTED_COLOUR)):
            if mask.any() and not mask.all():  # a contour needs both sides of the border in the image
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linewidths=1.8)
        note = ev.notes()[i]
        ax.set_title(f"{w['image_id'][:24]}\nJaccard {w['jaccard']:.3f}, Dice {w['dice']:.3f}"
                     + (f"\n({note})" if note else ""), fontsize=8.5)
    handles = [plt.Line2D([], [], color=TRUTH_COLOUR, lw=2, label="true outline"),
               plt.Line2D([], [], color=PREDICTED_COLOUR, lw=2, label="predicted outline")]
    fig.legend(handles=handles, loc="outside upper center", ncol=2, fontsize=9, frameon=False)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_segmentation_report(evaluation: SegmentationEvaluation, images: np.ndarray, out_dir: str | Path,
                              k: int = GALLERY_SIZE) -> dict[str, Path]:
    """The JSON, the CSV, both figures and ``report.html`` in ``out_dir``; returns their paths.
    ``images`` are the evaluated images, uint8 N x H x W x 3 in the evaluation's order."""
    images = np.asarray(images)
    n, h, w = evaluation.truth.shape
    if images.dtype != np.uint8 or images.shape != (n, h, w, 3):
        raise ValueError(f"the images must be uint8 of shape {(n, h, w, 3)} (one RGB image per evaluated mask, "
                         f"in the same order), got {images.dtype} of shape {images.shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = evaluation.save(out)
    files["jaccard_histogram"] = plot_jaccard_histogram(evaluation, out / "jaccard_histogram.png")
    files["worst_masks"] = plot_worst_masks(evaluation, images, out / "worst_masks.png", k)
    saved = evaluation.to_dict()  # undefined figures as None, which the page shows as n/a
    context = {
        "title": evaluation.description or f"{n} images",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        **{key: saved[key] for key in ("counts", "threshold", "unit", "bootstrap", "conventions")},
        "rows": [{"name": name, "label": label, **saved["summary"][name]} for name, label in saved["labels"].items()],
        "worst": evaluation.worst(k),
        "failure_below": FAILURE_BELOW,
        "level_pct": f"{100 * evaluation.level:g}",
        "images": {name: data_uri(files[name]) for name in ("jaccard_histogram", "worst_masks")},
    }
    files["html"] = out / "report.html"
    files["html"].write_text(template_environment().get_template(TEMPLATE).render(**context), encoding="utf-8")
    return files
