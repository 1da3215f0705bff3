"""Evaluate a volume bundle on a labelled CSV of NIfTI volumes (``lesionlens evaluate`` with a volume
bundle): the volume twin of :mod:`lesionlens.evaluation.bundles`.

The volumes are prepared with the card's own preprocessing. Which rows: as for images, ``auto`` is
the bundle's own validation split when the data is what it was trained on, else the test partition,
else all. Volumes the bundle trained on (the same file content, by sha256) are refused unless
allowed. A classification bundle gives the same :class:`~lesionlens.evaluation.result.Evaluation` and
files as a 2D one (metrics.json with intervals, predictions.csv, figures); a segmentation bundle,
per-volume Dice and Jaccard (:mod:`lesionlens.evaluation.volume_masks`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.schema import BundleError
from lesionlens.bundle.split import read_split
from lesionlens.data.labels import align_classes
from lesionlens.data.volume_load import VolumeData, prepare_volumes, read_volume_table
from lesionlens.evaluation.evaluate import resolve_split

log = logging.getLogger(__name__)


@dataclass
class VolumeBundleEvaluation:
    card: Card
    folder: Path
    what: str  # which volumes: the bundle's validation split, a partition, all
    written: object = None  # classification: the WrittenEvaluation
    masks: object = None  # segmentation: the VolumeMaskEvaluation
    regression: object = None  # regression: the RegressionEvaluation


def choose_volume_rows(data: VolumeData, card: Card, split: str, allow_leakage: bool) -> tuple[np.ndarray, str]:
    """Rows of ``data`` to evaluate for a resolved split; volumes the bundle trained on (by sha256)
    are refused unless ``allow_leakage`` (then they are only warned about)."""
    frame = data.table.frame
    if split == "own-val":
        split_file = card.file("split")
        val = {r.sha256 for r in read_split(split_file) if r.partition == "val"} if split_file else set()
        rows, what = np.flatnonzero(frame["sha256"].isin(val).to_numpy()), "the bundle's validation split"
    elif split == "all":
        rows, what = np.arange(len(frame)), "all volumes"
    else:
        rows, what = np.flatnonzero(frame["partition"].to_numpy() == split), f"the {split} partition"
    if len(rows) == 0:
        raise ValueError(f"no volumes to evaluate in {what}; use --split all")
    seen = {r.sha256 for r in card.training_rows()}
    leaked = [int(i) for i in rows if frame["sha256"].iloc[i] in seen]
    if leaked:
        message = (f"{len(leaked)} of the {len(rows)} volumes evaluated are {card.name}'s training volumes (first: "
                   f"{frame['path'].iloc[leaked[0]]}); the figures would be optimistic")
        if not allow_leakage:
            raise ValueError(message + "; pass --allow-leakage to evaluate them anyway")
        log.warning("%s", message)
    return rows, what


def evaluate_volume_bundle(bundle: str | Path | Card, data_path: str | Path, out: Path | None = None,
                           split: str = "auto", on_bad_input: str = "stop", resamples: int = 1000,
                           allow_leakage: bool = False) -> VolumeBundleEvaluation:
    """Evaluate the volume bundle on the CSV ``data_path`` and write the results to ``out`` (default
    ``BUNDLE/evaluations/<data>-<split>``)."""
    from lesionlens.evaluation.files import write_evaluation
    from lesionlens.evaluation.result import Evaluation
    from lesionlens.data.targets import store_targets, stored_targets
    from lesionlens.evaluation.regression import RegressionEvaluation
    from lesionlens.evaluation.regression_report import write_regression_report
    from lesionlens.evaluation.volume_masks import evaluate_volume_masks
    from lesionlens.predict_volumes import load_volume_model
    from lesionlens.predict_volumes import predict_volume_logits

    card = bundle if isinstance(bundle, Card) else read_card(bundle)
    if not card.is_volume:
        raise BundleError(f"{card.path}: a bundle for 2D images; evaluate it on images")
    segments = card.task == "segmentation"
    reg = card.regression
    table = read_volume_table(data_path, masks=segments, targets=tuple(reg.targets) if reg else ())
    if reg is not None:
        store_targets(table, tuple(reg.targets))
    data = prepare_volumes(table, card.preprocessing, on_bad_input)
    resolved = resolve_split(data.table, card, data_path, split)
    rows, what = choose_volume_rows(data, card, resolved, allow_leakage)
    out = Path(out) if out else card.path / "evaluations" / f"{Path(data_path).stem}-{resolved}"
    volumes, masks = data.arrays(rows)
    ids = data.table.frame["image_id"].astype(str).to_numpy()[rows].tolist()
    description = f"{card.name} on {Path(data_path).name} ({what}, {len(rows)} volumes)"
    logits = predict_volume_logits(load_volume_model(card), volumes)
    if segments:
        threshold = card.segmentation.threshold if card.segmentation else 0.5
        voxel = float(np.prod(card.preprocessing.spacing)) if card.preprocessing.spacing else None
        evaluation = evaluate_volume_masks(masks, 1 / (1 + np.exp(-logits[:, 0])) > threshold, ids, voxel, description)
        evaluation.write(out)
        return VolumeBundleEvaluation(card, out, what, masks=evaluation)
    if reg is not None:
        evaluation = RegressionEvaluation(list(reg.targets), stored_targets(data.table, reg.targets)[rows],
                                          reg.values(logits), np.asarray(reg.baseline), ids, description,
                                          n_resamples=resamples)
        write_regression_report(evaluation, out)
        return VolumeBundleEvaluation(card, out, what, regression=evaluation)
    mapping = align_classes(data.table.classes, card.classes)
    y_true = data.table.frame["label"].iloc[rows].map(mapping).to_numpy(dtype=np.int64)
    rule = card.rule
    ev = Evaluation(list(card.classes), y_true, rule.probabilities(logits), ids, description, rule=rule, logits=logits)
    return VolumeBundleEvaluation(card, out, what, written=write_evaluation(ev, out, resamples))
