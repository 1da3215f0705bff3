"""Write an evaluation to a folder: ``metrics.json`` (with bootstrap intervals and calibration
figures), ``predictions.csv`` and the figures a person reads."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lesionlens.evaluation.bootstrap import Interval, confidence_intervals
from lesionlens.evaluation.calibration import CalibrationReport, calibration_report
from lesionlens.evaluation.interpretation import plot_most_confused, plot_top_losses
from lesionlens.evaluation.plots import plot_confusion, plot_precision_recall, plot_reliability, plot_roc
from lesionlens.evaluation.result import Evaluation


@dataclass
class WrittenEvaluation:
    """An evaluation, the figures computed for it and where they were written."""

    ev: Evaluation
    folder: Path
    intervals: dict[str, Interval] = field(default_factory=dict)  # metric -> 95% bootstrap interval
    calibration: CalibrationReport | None = None
    files: dict[str, Path] = field(default_factory=dict)  # metrics, roc, confusion_matrix, ...
    metrics: dict = field(default_factory=dict)  # what metrics.json holds


def write_evaluation(ev: Evaluation, folder: Path, resamples: int = 1000, seed: int = 0) -> WrittenEvaluation:
    """``metrics.json`` (with bootstrap intervals and calibration figures), ``predictions.csv`` and
    the figures in ``folder``: ROC, precision-recall, confusion matrix, reliability diagram, top
    losses and most-confused pairs."""
    out = WrittenEvaluation(ev, folder)
    extra = {}
    if resamples:
        out.intervals = confidence_intervals(ev, resamples, seed)
        extra["confidence_intervals"] = {k: v.to_dict() for k, v in out.intervals.items()}
        extra["bootstrap"] = {"resamples": resamples, "seed": seed, "level": 0.95,
                              "method": "percentile, resampled within each true class"}
    if ev.logits is not None:
        out.calibration = calibration_report(ev.logits, ev.y_true, ev.temperature)
        extra["calibration"] = out.calibration.to_dict()
    files = {"metrics": ev.save(folder, extra)}
    out.metrics = json.loads(files["metrics"].read_text())
    files["roc"] = plot_roc(ev, folder / "roc.png")
    files["precision_recall"] = plot_precision_recall(ev, folder / "precision_recall.png")
    files["confusion_matrix"] = plot_confusion(ev, folder / "confusion_matrix.png")
    if ev.logits is not None:
        files["reliability"] = plot_reliability(ev, folder / "reliability.png")
    if ev.images is not None:
        files["top_losses"] = plot_top_losses(ev, folder / "top_losses.jpg")
    files["most_confused"] = plot_most_confused(ev, folder / "most_confused.png")
    out.files = files
    return out
