"""What the gate writes: ``gate.json``, the decision and its evidence in canonical JSON (its sha256
is the report's digest, which ``lesionlens registry promote`` records), and ``gate.html``, a
self-contained page in the evaluation report's style with a forest plot per clinical view: each
criterion's advantage and interval against its margin, for all images and every subgroup, so a
reviewer sees why the gate passed or failed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from lesionlens.digest import canonical_json
from lesionlens.evaluation.report import data_uri, template_environment
from lesionlens.upkeep.gate import GateResult
from lesionlens.upkeep.noninferiority import METRICS, Criterion, Judgement, Subgroup

TEMPLATE = "gate.html.j2"
COLOURS = {"pass": "#2f8132", "non-inferior": "#2f8132", "inconclusive": "#9aa5b1", "fail": "#c62828",
           "worse": "#c62828"}
LABELS = {"sensitivity": "sensitivity", "specificity": "specificity", "auc": "AUC (DeLong)", "ece": "ECE",
          "brier": "Brier score"}


def write_gate_report(result: GateResult, out: Path) -> dict[str, Path]:
    """gate.json, gate.html and the forest plots (forest-<view>.png) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    report = result.to_dict()
    files = {"json": out / "gate.json"}
    files["json"].write_bytes(canonical_json(report))
    for view in result.judgement.views:
        if any(c.view == view for c in result.judgement.criteria):
            files[f"forest_{view}"] = plot_forest(result.judgement, view, out / f"forest-{view}.png")
    context = {"report": report, "lines": result.lines(),
               "forests": {k.removeprefix("forest_"): data_uri(p) for k, p in files.items() if k.startswith("forest_")},
               "labels": LABELS}
    files["html"] = out / "gate.html"
    files["html"].write_text(template_environment("lesionlens.upkeep").get_template(TEMPLATE).render(**context),
                             encoding="utf-8")
    return files


def plot_forest(judgement: Judgement, view: str, path: Path) -> Path:
    """One panel per criterion, one row per subgroup (all images first, in bold): the challenger's
    advantage with its interval, zero (grey) and the margin (dashed red); green non-inferior, red
    failing, grey inconclusive. Subgroups too small to judge are listed with their counts."""
    criteria = [c for c in judgement.criteria if c.view == view]
    groups: list[Subgroup] = []
    for c in criteria:
        if c.subgroup not in groups:
            groups.append(c.subgroup)
    too_few = [t for t in judgement.too_few if t.view == view and not t.subgroup.primary]
    labels = [str(g) for g in groups] + [f"{t.subgroup} (too few: {t.positives}+ / {t.negatives}-)" for t in too_few]
    rows = {g: i for i, g in enumerate(groups)}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.0 * len(METRICS) + 2.6, 0.34 * len(labels) + 1.6),
                             sharey=True, squeeze=False)
    for ax, metric in zip(axes[0], METRICS):
        chosen: list[Criterion] = [c for c in criteria if c.metric == metric]
        for c in chosen:
            y, a, colour = rows[c.subgroup], c.advantage, COLOURS[c.verdict]
            ax.plot([a.low, a.high], [y, y], color=colour, lw=2.2 if c.subgroup.primary else 1.4)
            ax.plot([a.estimate], [y], "o" if c.subgroup.primary else "s", color=colour,
                    ms=7 if c.subgroup.primary else 4.5)
        if chosen:
            margin = chosen[0].margin
            ax.axvline(0, color="#7b8794", lw=0.8)
            ax.axvline(-margin, color="#c62828", lw=1, ls="--")
            better = "lower" if not METRICS[metric][1] else "higher"
            ax.set_title(f"{LABELS[metric]}\n(margin {margin:g}; {better} is better)", fontsize=9)
        ax.grid(axis="x", color="#e4e7eb", lw=0.6)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.set_xlabel("challenger's advantage", fontsize=8)
        for y in range(len(groups), len(labels)):
            ax.axhspan(y - 0.5, y + 0.5, color="#f5f7fa", lw=0)
    axes[0][0].set_yticks(range(len(labels)), labels)
    for tick in axes[0][0].get_yticklabels()[:1]:
        tick.set_fontweight("bold")
    axes[0][0].set_ylim(len(labels) - 0.5, -0.5)
    fig.suptitle(f"{view} vs rest: the challenger's advantage over the champion, with two-sided "
                 f"{judgement.settings.level:.0%} intervals (> 0 favours the challenger)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
