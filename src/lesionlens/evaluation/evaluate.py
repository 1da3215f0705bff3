"""Evaluate a model or a bundle on labelled images and write the figures a person reads."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from lesionlens.bundle import Card
from lesionlens.data.labels import align_classes, apply_view
from lesionlens.data.images import Preprocessing
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.table import ImageTable
from lesionlens.evaluation.bootstrap import confidence_intervals
from lesionlens.evaluation.calibration import calibration_report
from lesionlens.evaluation.plots import plot_confusion, plot_precision_recall, plot_reliability, plot_roc
from lesionlens.explain.top_losses import plot_most_confused, plot_top_losses
from lesionlens.evaluation.result import Evaluation
from lesionlens.decision import DecisionRule
from lesionlens.inference import load_model, predict_logits

log = logging.getLogger(__name__)

SPLITS = ("auto", "train", "val", "test", "all")  # "auto" resolves to own-val, test or all


def evaluate_model(model: nn.Module, classes: list[str], pre: Preprocessing, data: PreparedData,
                   rows: np.ndarray, description: str, rule: DecisionRule | None = None, tta: str = "none",
                   progress: bool = False) -> Evaluation:
    """Predict ``data``'s images at ``rows`` and pair the probabilities with their labels.
    ``rule`` (the bundle's temperature and operating points) turns logits into probabilities and
    decisions; without one they are the plain softmax and the argmax."""
    rule = rule or DecisionRule(tuple(classes))
    frame = data.table.frame.iloc[rows]
    mapping = align_classes(data.table.classes, classes)
    y_true = frame["label"].map(mapping).to_numpy(dtype=np.int64)
    cache_rows = frame["cache_row"].to_numpy()
    logits = predict_logits(model, data.images.array, pre, cache_rows, tta=tta, progress=progress)
    return Evaluation(classes, y_true, rule.probabilities(logits), frame["image_id"].astype(str).tolist(),
                      description, {p.view: p.threshold for p in rule.operating_points}, logits,
                      cache_rows, data.images.array, rule.temperature, tta)


def write_evaluation(ev: Evaluation, folder: Path, resamples: int = 1000, seed: int = 0) -> dict[str, Path]:
    """``metrics.json`` (with bootstrap intervals and calibration figures), ``predictions.csv`` and
    the figures in ``folder``: ROC, precision-recall, confusion matrix, reliability diagram, top
    losses and most-confused pairs."""
    extra = {}
    if resamples:
        intervals = confidence_intervals(ev, resamples, seed)
        extra["confidence_intervals"] = {k: v.to_dict() for k, v in intervals.items()}
        extra["bootstrap"] = {"resamples": resamples, "seed": seed, "level": 0.95,
                              "method": "percentile, resampled within each true class"}
    if ev.logits is not None:
        extra["calibration"] = calibration_report(ev.logits, ev.y_true, ev.temperature).to_dict()
    paths = {"metrics": ev.save(folder, extra)}
    paths["roc"] = plot_roc(ev, folder / "roc.png")
    paths["precision_recall"] = plot_precision_recall(ev, folder / "precision_recall.png")
    paths["confusion_matrix"] = plot_confusion(ev, folder / "confusion_matrix.png")
    if ev.logits is not None:
        paths["reliability"] = plot_reliability(ev, folder / "reliability.png")
    if ev.images is not None:
        paths["top_losses"] = plot_top_losses(ev, folder / "top_losses.jpg")
    paths["most_confused"] = plot_most_confused(ev, folder / "most_confused.png")
    return paths


def resolve_split(table: ImageTable, card: Card, data_path: str | Path, split: str) -> str:
    """``auto`` becomes ``own-val`` (the bundle's validation split, when this is the data it was
    trained on), else ``test`` when the data has a test partition, else ``all``."""
    if split != "auto":
        return split
    trained_on = card.data.get("data", {}).get("path")
    if trained_on and Path(trained_on).expanduser().resolve() == Path(data_path).expanduser().resolve():
        return "own-val"
    return "test" if (table.frame["partition"] == "test").any() else "all"


def choose_rows(data: PreparedData, card: Card, split: str) -> tuple[np.ndarray, str]:
    """Rows of ``data`` to evaluate for a resolved split; warns about images the bundle trained on."""
    frame = data.table.frame
    trained_on = _training_hashes(card)
    if split == "own-val":
        rows = np.flatnonzero(frame["sha256"].isin(trained_on.get("val", set())).to_numpy())
        what = "the bundle's validation split"
    elif split == "all":
        rows, what = np.arange(len(frame)), "all images"
    else:
        rows, what = np.flatnonzero(frame["partition"].to_numpy() == split), f"the {split} partition"
    if len(rows) == 0:
        raise ValueError(f"no images to evaluate in {what}; use --split all")
    leaked = int(frame.iloc[rows]["sha256"].isin(trained_on.get("train", set())).sum())
    if leaked:
        log.warning("%d of the %d images evaluated were used to TRAIN this bundle: the figures are optimistic",
                    leaked, len(rows))
    return rows, what


def _training_hashes(card: Card) -> dict[str, set[str]]:
    split_file = card.path / "split.csv"
    if not split_file.is_file():
        return {}
    split = pd.read_csv(split_file, dtype=str)
    return {p: set(g["sha256"].dropna()) for p, g in split.groupby("partition")}


def evaluate_bundle(card: Card, data_path: str | Path, out: Path | None = None, fmt: str = "auto",
                    images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                    cache_dir: str | None = None, tta: str | None = None, resamples: int = 1000,
                    progress: bool = True) -> tuple[Evaluation, Path]:
    """Evaluate the bundle's model on labelled data and write metrics and figures to ``out``
    (default ``BUNDLE/evaluations/<data>-<split>``). Only the chosen partition is decoded.
    Probabilities and decisions follow the bundle's temperature and operating points; ``tta``
    None is the bundle's own test-time augmentation."""
    ev, out = predict_split(card, data_path, out, fmt, images, split, on_bad_input, cache_dir, tta, progress)
    write_evaluation(ev, out, resamples)
    return ev, out


def predict_split(card: Card, data_path: str | Path, out: Path | None = None, fmt: str = "auto",
                  images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                  cache_dir: str | None = None, tta: str | None = None,
                  progress: bool = True) -> tuple[Evaluation, Path]:
    """The bundle's predictions on a split of labelled data, and the folder its results belong in
    (nothing but the data-issues report is written yet). ``tta`` None: the bundle's own."""
    pre = card.preprocessing
    tta = card.resolve_tta(tta)
    table = apply_view(read_table(data_path, fmt, images), card.data.get("label_view", "all"))
    align_classes(table.classes, card.classes)  # fail before decoding anything
    split = resolve_split(table, card, data_path, split)
    if split in ("train", "val", "test"):
        table = table.subset((table.frame["partition"] == split).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data_path}: the data has no {split!r} partition; use --split all")
    suffix = "" if tta == "none" else f"-tta-{tta}"
    out = out or card.path / "evaluations" / f"{Path(data_path).stem}-{split}{suffix}"
    data = prepare(table, pre, on_bad_input, cache_dir, report=out / "data_issues.csv", progress=progress)
    rows, what = choose_rows(data, card, split)
    description = f"{card.architecture} on {Path(data_path).name} ({what}, {len(rows)} images" + \
                  (f", TTA {tta})" if tta != "none" else ")")
    rule = DecisionRule.from_card(card.data)
    ev = evaluate_model(load_model(card), card.classes, pre, data, rows, description, rule, tta, progress)
    return ev, out
