"""What the console says about an evaluation and a bundle's decision rule, formatted from the
result objects (never from saved dictionaries), so the printout and the files cannot disagree."""

from __future__ import annotations

import math

import numpy as np

from lesionlens.bundle.card import Card
from lesionlens.evaluation import metrics as M
from lesionlens.evaluation.files import WrittenEvaluation

HEADLINE_INTERVALS = (("balanced_accuracy", "balanced accuracy"), ("macro_auc", "macro AUC"),
                      ("melanoma_auc", "melanoma AUC"))


def fmt(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def evaluation_lines(written: WrittenEvaluation) -> list[str]:
    """Headline figures, one row per class and per clinical view, and the 95% intervals."""
    ev = written.ev
    lines = [
        f"{ev.description or 'Evaluation'}:",
        f"  balanced accuracy {fmt(ev.balanced_accuracy)}   accuracy {fmt(ev.accuracy)}   "
        f"macro AUC {fmt(ev.macro_auc)} ({M.auc_grade(ev.macro_auc)})",
        f"  {'class':<22}{'n':>6}{'sens':>8}{'spec':>8}{'PPV':>8}{'NPV':>8}{'AUC':>8}  grade",
    ]
    support = np.bincount(ev.y_true, minlength=len(ev.classes))
    for name, n, stats, auc in zip(ev.classes, support, M.one_vs_rest(ev.confusion_matrix()), ev.class_auc):
        if n == 0 and math.isnan(auc):
            continue
        lines.append(_row(name, int(n), stats, float(auc)))
    for name, view in ev.binary_views().items():
        lines.append(_row(f"{name} vs rest", int(view.y_true.sum()), view.stats, view.auc))
    intervals = [f"{label} [{written.intervals[k].low:.3f}, {written.intervals[k].high:.3f}]"
                 for k, label in HEADLINE_INTERVALS if k in written.intervals]
    if intervals:
        lines.append("  95% intervals: " + ", ".join(intervals))
    return lines


def _row(name: str, n: int, s: M.BinaryStats, auc: float) -> str:
    return (f"  {name:<22}{n:>6}{fmt(s.sensitivity):>8}{fmt(s.specificity):>8}{fmt(s.ppv):>8}{fmt(s.npv):>8}"
            f"{fmt(auc):>8}  {M.auc_grade(auc) or ''}")


def rule_lines(card: Card) -> list[str]:
    """The decision rule fitted on validation data, and what it gave there, in a line or two."""
    lines = []
    c = card.calibration
    if c is not None:
        lines.append(f"  temperature {c.temperature:.3f}" + (f" (validation ECE {c.ece_before:.3f} -> {c.ece_after:.3f})"
                                                            if c.ece_before is not None else ""))
    for view, p in card.operating_points.items():
        measured = (f": validation sensitivity {p.validation_sensitivity:.3f}, specificity {p.validation_specificity:.3f}"
                    if p.validation_sensitivity is not None else "")
        if not p.validated:
            measured = (": UNVALIDATED, chosen on images the model trained on; its sensitivity on new images is "
                        "unknown (fit it on held-out images: lesionlens calibrate BUNDLE --data HELD_OUT)")
        lines.append(f"  {view} decision: p_{view} >= {p.threshold:.4f} for {p.criterion} "
                     f"{'' if p.target is None else p.target}{measured}")
    return lines


def calibration_lines(card: Card) -> list[str]:
    """What ``lesionlens calibrate`` fitted: the temperature's effect and each operating point."""
    c = card.calibration
    lines = [f"Fitted on {c.fitted_on} (test-time augmentation {card.tta}, now the bundle's default):",
             f"  temperature {c.temperature:.3f}: ECE {c.ece_before:.3f} -> {c.ece_after:.3f}, "
             f"NLL {c.nll_before:.3f} -> {c.nll_after:.3f}, Brier {c.brier_before:.3f} -> {c.brier_after:.3f}"]
    for view, p in card.operating_points.items():
        figures = (f"validation sensitivity {p.validation_sensitivity:.3f}, specificity {p.validation_specificity:.3f}"
                   if p.validated else "UNVALIDATED: fitted on images the model trained on, so no sensitivity is "
                                       "quoted; fit it on held-out images")
        lines.append(f"  {view}: positive when p_{view} >= {p.threshold:.4f} ({p.criterion}"
                     f"{'' if p.target is None else ' ' + format(p.target, '.3f')}): {figures}")
    return lines
