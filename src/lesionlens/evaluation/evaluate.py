"""Predict labelled images with a model or a bundle and pair the probabilities with the labels: an
:class:`~lesionlens.evaluation.result.Evaluation`. Which images: a partition of the data, or the
bundle's own validation split. Images the bundle was trained on (or altered copies of them) are
refused unless allowed (lesionlens.quality.leakage)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from torch import nn

from lesionlens.bundle.card import Card
from lesionlens.bundle.split import hashes_by_partition, read_split
from lesionlens.data.images import Preprocessing
from lesionlens.data.labels import align_classes, apply_view
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.table import ImageTable
from lesionlens.decision import DecisionRule
from lesionlens.evaluation.result import Evaluation
from lesionlens.inference import load_classifier
from lesionlens.inference_pool import bundle_logits
from lesionlens.quality.leakage import check_against_training, enforce

log = logging.getLogger(__name__)

def evaluate_model(model: nn.Module, classes: list[str], pre: Preprocessing, data: PreparedData,
                   rows: np.ndarray, description: str, rule: DecisionRule | None = None, tta: str = "none",
                   progress: bool = False, processes: int = 1, bundle: Path | None = None) -> Evaluation:
    """Predict ``data``'s images at ``rows`` and pair the probabilities with their labels.
    ``rule`` (the bundle's temperature and operating points) turns logits into probabilities and
    decisions; without one they are the plain softmax and the argmax. ``processes`` > 1 predicts in
    that many processes, each loading the model from ``bundle`` (:mod:`lesionlens.inference_pool`)."""
    rule = rule or DecisionRule(tuple(classes))
    frame = data.table.frame.iloc[rows]
    mapping = align_classes(data.table.classes, classes)
    y_true = frame["label"].map(mapping).to_numpy(dtype=np.int64)
    cache_rows = frame["cache_row"].to_numpy()
    logits = bundle_logits(model, bundle, data.images.array, pre, cache_rows, tta, processes, progress=progress)
    return Evaluation(classes, y_true, rule.probabilities(logits), frame["image_id"].astype(str).tolist(),
                      description, rule=rule, logits=logits, rows=cache_rows, images=data.images.array, tta=tta)


def resolve_split(table: ImageTable, card: Card, data_path: str | Path, split: str) -> str:
    """``auto`` becomes ``own-val`` (the bundle's validation split, when this is the data it was
    trained on), else ``test`` when the data has a test partition, else ``all``."""
    if split != "auto":
        return split
    trained_on = card.dataset.path
    if trained_on and Path(trained_on).expanduser().resolve() == Path(data_path).expanduser().resolve():
        return "own-val"
    return "test" if (table.frame["partition"] == "test").any() else "all"


def choose_rows(data: PreparedData, card: Card, split: str, allow_leakage: bool = False) -> tuple[np.ndarray, str]:
    """Rows of ``data`` to evaluate for a resolved split; images the bundle trained on, or altered
    copies of them, are refused unless ``allow_leakage`` (then they are only warned about)."""
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
    if card.file("split") is not None:
        check = check_against_training(data.table, data.images.array, rows, card.training_rows())
        enforce(check, allow_leakage, f"{len(check.findings)} of the {len(rows)} images evaluated are "
                                      f"{card.name}'s training images or copies of them (the figures would be optimistic)")
    return rows, what


def _training_hashes(card: Card) -> dict[str, set[str]]:
    split = card.file("split")
    return hashes_by_partition(read_split(split)) if split else {}


def predict_split(card: Card, data_path: str | Path, out: Path | None = None, fmt: str = "auto",
                  images: str | Path | None = None, split: str = "auto", on_bad_input: str = "stop",
                  cache_dir: str | None = None, tta: str | None = None, progress: bool = True,
                  allow_leakage: bool = False, processes: int = 1) -> tuple[Evaluation, Path]:
    """The bundle's predictions on a split of labelled data, and the folder its results belong in
    (nothing but the data-issues report is written yet). ``tta`` None: the bundle's own; ``processes``:
    how many processes predict (one per GPU, or sharing the CPU)."""
    pre = card.preprocessing
    tta = card.resolve_tta(tta)
    table = apply_view(read_table(data_path, fmt, images), card.label_view)
    align_classes(table.classes, card.classes)  # fail before decoding anything
    split = resolve_split(table, card, data_path, split)
    if split in ("train", "val", "test"):
        table = table.subset((table.frame["partition"] == split).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data_path}: the data has no {split!r} partition; use --split all")
    suffix = "" if tta == "none" else f"-tta-{tta}"
    out = out or card.path / "evaluations" / f"{Path(data_path).stem}-{split}{suffix}"
    data = prepare(table, pre, on_bad_input, cache_dir, report=out / "data_issues.csv", progress=progress)
    rows, what = choose_rows(data, card, split, allow_leakage)
    description = f"{card.architecture} on {Path(data_path).name} ({what}, {len(rows)} images" + \
                  (f", TTA {tta})" if tta != "none" else ")")
    ev = evaluate_model(load_classifier(card), card.classes, pre, data, rows, description, card.rule, tta, progress,
                        processes, card.path)
    return ev, out
