"""Evaluate a model or a bundle on labelled images and write the figures a person reads."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from lesionlens.bundle import Card
from lesionlens.data.labels import align_classes
from lesionlens.data.images import Preprocessing
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.evaluation.plots import plot_confusion, plot_roc
from lesionlens.evaluation.result import Evaluation
from lesionlens.inference import load_model, predict_probs

log = logging.getLogger(__name__)

SPLITS = ("auto", "train", "val", "test", "all")


def evaluate_model(model: nn.Module, classes: list[str], pre: Preprocessing, data: PreparedData,
                   rows: np.ndarray, description: str, progress: bool = False) -> Evaluation:
    """Predict ``data``'s images at ``rows`` and pair the probabilities with their labels."""
    frame = data.table.frame.iloc[rows]
    mapping = align_classes(data.table.classes, classes)
    y_true = frame["label"].map(mapping).to_numpy(dtype=np.int64)
    probs = predict_probs(model, data.images.array, pre, frame["cache_row"].to_numpy(), progress=progress)
    return Evaluation(classes, y_true, probs, frame["image_id"].astype(str).tolist(), description)


def write_evaluation(ev: Evaluation, folder: Path) -> dict[str, Path]:
    """``metrics.json``, ``predictions.csv``, ``roc.png`` and ``confusion_matrix.png`` in ``folder``."""
    paths = {"metrics": ev.save(folder)}
    paths["roc"] = plot_roc(ev, folder / "roc.png")
    paths["confusion_matrix"] = plot_confusion(ev, folder / "confusion_matrix.png")
    return paths


def choose_rows(data: PreparedData, card: Card, split: str) -> tuple[np.ndarray, str]:
    """Which rows to evaluate. ``auto``: the bundle's own validation split when this is its
    training data, else the test partition when the data has one, else every image."""
    frame = data.table.frame
    trained_on = _training_hashes(card)
    if split == "auto":
        used = frame["sha256"].isin(trained_on.get("train", set()))
        if used.any():
            val = frame["sha256"].isin(trained_on.get("val", set())).to_numpy()
            log.info("this is the bundle's training data: evaluating its validation split")
            return np.flatnonzero(val), "the bundle's validation split"
        split = "test" if (frame["partition"] == "test").any() else "all"
    if split == "all":
        rows = np.arange(len(frame))
    else:
        rows = np.flatnonzero(frame["partition"].to_numpy() == split)
        if len(rows) == 0:
            raise ValueError(f"the data has no {split!r} partition; use --split all")
    leaked = frame.iloc[rows]["sha256"].isin(trained_on.get("train", set())).sum()
    if leaked:
        log.warning("%d of the %d images evaluated were used to TRAIN this bundle: the figures are optimistic",
                    leaked, len(rows))
    return rows, ("all images" if split == "all" else f"the {split} partition")


def _training_hashes(card: Card) -> dict[str, set[str]]:
    split_file = card.path / "split.csv"
    if not split_file.is_file():
        return {}
    split = pd.read_csv(split_file, dtype=str)
    return {p: set(g["sha256"].dropna()) for p, g in split.groupby("partition")}


def evaluate_bundle(card: Card, data_path: str | Path, out: Path, fmt: str = "auto",
                    images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                    cache_dir: str | None = None, progress: bool = True) -> Evaluation:
    """Read the data, evaluate the bundle's model on the chosen rows and write everything to ``out``."""
    pre = card.preprocessing
    table = read_table(data_path, fmt, images)
    align_classes(table.classes, card.classes)  # fail before decoding anything
    data = prepare(table, pre, on_bad_input, cache_dir, report=out / "data_issues.csv", progress=progress)
    rows, what = choose_rows(data, card, split)
    description = f"{card.architecture} on {Path(data_path).name} ({what}, {len(rows)} images)"
    ev = evaluate_model(load_model(card), card.classes, pre, data, rows, description, progress)
    write_evaluation(ev, out)
    return ev
