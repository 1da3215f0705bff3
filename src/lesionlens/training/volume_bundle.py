"""The bundle of a volume run: the validation split's evaluation, the split file and the card.

Called by :func:`lesionlens.training.volume_fit.train_volumes` once the weights are saved. The card
is the 2D bundles' card (:mod:`lesionlens.bundle.card`) with a
:class:`~lesionlens.data.volumes.VolumePreprocessing` as its preprocessing (``"kind": "volume"``: grid,
spacing, normalisation), so ``predict`` reads how to prepare a volume from the bundle itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from lesionlens.bundle.card import write_card
from lesionlens.bundle.schema import DataInfo, ModelInfo, RegressionInfo, SegmentationInfo, TrainingInfo, ValidationInfo
from lesionlens.bundle.split import SPLIT_FILE, fingerprint, split_counts, write_split
from lesionlens.config import RunConfig
from lesionlens.data.volume_load import VolumeData
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.evaluation.regression_report import write_regression_report
from lesionlens.training.distributed import device_description


def write_volume_bundle(cfg: RunConfig, out: Path, task: str, model: nn.Module, data: VolumeData,
                        pre: VolumePreprocessing, train_rows: np.ndarray, val_rows: np.ndarray, trainer, kept: dict,
                        fit_seconds: float, total_seconds: float, regression: RegressionInfo | None = None):
    from lesionlens.training.curves import epoch_table, plot_learning_curves
    from lesionlens.training.loop import median_of
    from lesionlens.training.volume_fit import VolumeTrainResult

    table = data.table
    write_split(table, out / SPLIT_FILE)
    history = epoch_table(out / "logs")
    files = {"split": SPLIT_FILE}
    title = f"{cfg.model.name} on volumes, {'x'.join(map(str, pre.size))}"
    if plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor, title=title):
        files["learning_curves"] = "learning_curves.png"
    ids = table.frame["image_id"].astype(str).to_numpy()[val_rows].tolist()
    volumes, masks = data.arrays(val_rows)
    calibration, operating_points, segmentation = None, {}, None
    classes, outputs = table.classes, 1 if task == "segmentation" else len(table.classes)
    if task == "regression":
        evaluation = _regression(model, regression, volumes, data, val_rows, ids, cfg.train.seed,
                                 f"{cfg.model.name} on {Path(cfg.data.path).name}: validation split")
        files |= {f"regression_{k}": str(p.relative_to(out))
                  for k, p in write_regression_report(evaluation, out / "regression").items()}
        summary = evaluation.summary
        regression = replace(regression, validation=summary)
        validation = ValidationInfo(len(val_rows), None, None, None)
        classes, outputs = list(regression.targets), len(regression.targets)
    elif task == "classification":
        _, written, rule = _classification(model, table.classes, volumes, table.targets()[val_rows], ids,
                                                     f"{cfg.model.name} on {Path(cfg.data.path).name} "
                                                     f"(validation split, {len(val_rows)} volumes)", out)
        summary = written.metrics
        validation = ValidationInfo(summary["n_images"], summary["accuracy"], summary["balanced_accuracy"],
                                    summary["macro_auc"], summary["macro_auc_grade"], summary["per_class"],
                                    summary["binary"])
        calibration, operating_points = rule.calibration, rule.operating_points
        files |= {name: str(p.relative_to(out)) for name, p in written.files.items()}
        evaluation = written
    else:
        evaluation = _segmentation(model, volumes, masks, ids, pre, cfg.segment.threshold,
                                   f"{cfg.model.name} on {Path(cfg.data.path).name} (validation split, "
                                   f"{len(val_rows)} volumes)")
        written_files = evaluation.write(out / "segmentation")
        files |= {f"segmentation_{k}": str(p.relative_to(out)) for k, p in written_files.items()}
        summary = evaluation.summary()
        validation = ValidationInfo(len(val_rows), None, None, None)
        channels = model.net.channels if hasattr(model, "net") and hasattr(model.net, "channels") else (0,)
        segmentation = SegmentationInfo(cfg.segment.threshold, False, cfg.segment.loss, "transposed",
                                        int(channels[0]), summary)
    parameters = sum(p.numel() for p in model.parameters())
    card = write_card(
        out, task=task,
        model=ModelInfo(cfg.model.name, outputs, "linear", cfg.model.drop_rate, False, None, parameters, parameters),
        classes=classes, label_view="all", preprocessing=pre, tta="none",
        training=TrainingInfo(
            config=cfg.to_dict(), strategy=cfg.train.strategy, monitor=cfg.train.monitor,
            fit_time_s=round(fit_seconds, 1), total_time_s=round(total_seconds, 1),
            device=device_description(),
            epochs_run=int(trainer.current_epoch), **kept,
            train_images_per_s=median_of(history, "train_images_per_s")),
        dataset=DataInfo(str(cfg.data.path), table.format, fingerprint(table), len(table), split_counts(table),
                         SPLIT_FILE, cfg.split_seed(), len(table.issues), None),
        validation=validation, calibration=calibration, operating_points=operating_points, files=files,
        segmentation=segmentation, regression=regression,
    )
    return VolumeTrainResult(out, card, task, summary, evaluation)


def _classification(model: nn.Module, classes: list[str], volumes: np.ndarray, y_true: np.ndarray, ids: list[str],
                    description: str, out: Path):
    """The validation volumes' Evaluation under the decision rule fitted on them (temperature, and
    operating points where the classes have clinical views), written to ``out/evaluation``."""
    from lesionlens.decision import DecisionRule
    from lesionlens.evaluation.calibrate import fit_rule
    from lesionlens.evaluation.files import write_evaluation
    from lesionlens.evaluation.result import Evaluation
    from lesionlens.predict_volumes import predict_volume_logits

    logits = predict_volume_logits(model, volumes)
    rule = DecisionRule(tuple(classes))
    ev = Evaluation(list(classes), np.asarray(y_true, np.int64), rule.probabilities(logits), ids, description,
                    rule=rule, logits=logits)
    ev, fitted = fit_rule(ev, held_out=True)
    return ev, write_evaluation(ev, out / "evaluation"), fitted


def _segmentation(model: nn.Module, volumes: np.ndarray, masks: np.ndarray, ids: list[str],
                  pre: VolumePreprocessing, threshold: float, description: str):
    from lesionlens.evaluation.volume_masks import evaluate_volume_masks
    from lesionlens.predict_volumes import predict_volume_logits

    logits = predict_volume_logits(model, volumes)
    predicted = 1 / (1 + np.exp(-logits[:, 0])) > threshold
    voxel = float(np.prod(pre.spacing)) if pre.spacing else None
    return evaluate_volume_masks(masks, predicted, ids, voxel, description)


def _regression(model: nn.Module, info: RegressionInfo, volumes: np.ndarray, data: VolumeData, rows: np.ndarray,
                ids: list[str], seed: int, description: str):
    """The validation volumes' predicted numbers against the true ones and the training median."""
    from lesionlens.data.targets import stored_targets
    from lesionlens.evaluation.regression import RegressionEvaluation
    from lesionlens.predict_volumes import predict_volume_logits

    predicted = info.values(predict_volume_logits(model, volumes))
    return RegressionEvaluation(list(info.targets), stored_targets(data.table, info.targets)[rows], predicted,
                                np.asarray(info.baseline), ids, description, seed=seed)

