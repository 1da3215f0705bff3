"""The study view's figures: per dimension (body site, age band, sex), cases by diagnosis as stacked
bars, and the model's sensitivity and specificity per subgroup with their 95% intervals."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lesionlens.cases.study import Study  # noqa: E402

TITLES = {"site": "body site", "age_band": "age band", "sex": "sex"}


def plot_study(study: Study, out: Path) -> list[Path]:
    written = []
    diagnoses = sorted({d for g in study.groups for d in g.diagnoses})
    colours = plt.get_cmap("tab10")
    for dim, title in TITLES.items():
        groups = [g for g in study.groups if g.dimension == dim]
        if not groups:
            continue
        fig, axes = plt.subplots(1, 1 + len(study.views), figsize=(5 + 4 * len(study.views), 0.4 * len(groups) + 1.8),
                                 sharey=True, squeeze=False)
        axes = axes[0]
        y = np.arange(len(groups))
        names = [g.value for g in groups]
        left = np.zeros(len(groups))
        for k, d in enumerate(diagnoses):
            counts = np.array([g.diagnoses.get(d, 0) for g in groups])
            axes[0].barh(y, counts, left=left, color=colours(k % 10), label=d)
            left += counts
        unlabelled = np.array([g.cases - g.labelled for g in groups])
        axes[0].barh(y, unlabelled, left=left, color="#d0d0d0", label="not yet labelled")
        axes[0].set_yticks(y, names)
        axes[0].invert_yaxis()
        axes[0].set_xlabel("cases")
        axes[0].set_title(f"cases by {title}")
        axes[0].legend(fontsize=7, loc="lower right")
        for ax, view in zip(axes[1:], study.views):
            for offset, (metric, colour) in enumerate((("sensitivity", "#c0392b"), ("specificity", "#2471a3"))):
                rates = [getattr(g, metric)[view] for g in groups]
                est = np.array([r.estimate if r.n else np.nan for r in rates])
                low = np.array([r.low if r.n else np.nan for r in rates])
                high = np.array([r.high if r.n else np.nan for r in rates])
                ax.errorbar(est, y + (offset - 0.5) * 0.3, xerr=[est - low, high - est], fmt="o", color=colour,
                            capsize=3, label=metric)
            ax.set_xlim(0, 1)
            ax.set_title(f"{view}: at the operating point (95% CI)")
            ax.legend(fontsize=7, loc="lower left")
            ax.grid(axis="x", alpha=0.3)
        fig.tight_layout()
        path = out / f"study_{dim}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
