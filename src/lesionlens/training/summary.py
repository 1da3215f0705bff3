"""What ``lesionlens train`` says when a run ends, formatted from its result."""

from __future__ import annotations

from lesionlens.evaluation.summary import evaluation_lines, rule_lines
from lesionlens.training.fit import TrainResult


def training_summary(result: TrainResult) -> str:
    from lesionlens.training.volume_fit import VolumeTrainResult

    if isinstance(result, VolumeTrainResult):
        return volume_summary(result)
    card, out = result.card, result.bundle
    if result.segmentation is not None:
        return segmentation_summary(result)
    if result.regression is not None:
        return regression_summary(result)
    lines = [
        "",
        f"Bundle written to {out}/",
        f"  {card.architecture} at {card.preprocessing.image_size}px, classes {card.classes}",
        run_line(result),
        "",
        *evaluation_lines(result.evaluation),
        *rule_lines(card),
        "",
        "Files:",
        f"  {out / 'card.json'}  (model card)",
        f"  {out / 'evaluation'}/  (metrics.json with 95% intervals; ROC, precision-recall, confusion matrix,",
        "      reliability diagram, top losses, most-confused pairs)",
        *([f"  {curves}"] if (curves := card.file("learning_curves")) else []),
        "Next:",
        f"  lesionlens evaluate {out} --data OTHER_DATA --report",
        f"  lesionlens predict {out} IMAGE_OR_FOLDER",
    ]
    return "\n".join(lines)


def run_line(result: TrainResult) -> str:
    """How long the run took, against its estimate, and which epoch it kept."""
    card, t = result.card, result.card.training
    expected = f"; estimated {result.estimate.minutes:.0f} min" if result.estimate else ""
    if t.strategy == "features":
        return (f"  strategy features: {card.model.features_classifier['kind']} fitted on frozen "
                f"embeddings in {t.fit_time_s:.0f} s ({t.train_images_per_s} images/s){expected}")
    kept = card.kept_epoch + (", so the figures below are not held out" if card.validation.seen_in_training else "")
    planned = t.config["train"]
    epochs = f"{t.epochs_run} of {planned['epochs']} epochs" if t.stopped_early else f"{t.epochs_run} epochs"
    cut = (f", the last cut short by the time limit (train.max_minutes {planned['max_minutes']:g})"
           if t.stopped_by_time else
           f", stopped early: {planned['patience']} epoch(s) without a better {t.monitor} (train.patience)"
           if t.stopped_early else "")
    return (f"  strategy {t.strategy}: trained {epochs} in {t.fit_time_s / 60:.1f} min{cut} "
            f"({t.train_images_per_s} images/s{expected}); {kept}")


def segmentation_summary(result: TrainResult) -> str:
    card, out = result.card, result.bundle
    seg = card.segmentation
    lines = [
        "",
        f"Bundle written to {out}/ (task {card.task})",
        f"  U-Net on {card.architecture} at {card.preprocessing.image_size}px ({seg.upsample} decoder from width "
        f"{seg.decoder_width}, loss {seg.loss})" + (f", classes {card.classes}" if card.task == "multitask" else ""),
        run_line(result),
        "",
        *result.segmentation.lines(),
        *([""] + evaluation_lines(result.evaluation) + rule_lines(card) if result.evaluation is not None else []),
        "",
        "Files:",
        f"  {out / 'card.json'}  (model card)",
        *(f"  {out / path}" for name, path in sorted(card.files.items()) if name.startswith("segmentation_")),
        *([f"  {curves}"] if (curves := card.file("learning_curves")) else []),
    ]
    return "\n".join(lines)


def volume_summary(result) -> str:
    """What a run on volumes (:class:`~lesionlens.training.volume_fit.VolumeTrainResult`) says."""
    card, out, pre = result.card, result.bundle, result.card.preprocessing
    grid = "x".join(map(str, pre.size))
    spacing = f" voxels of {'x'.join(f'{s:g}' for s in pre.spacing)} mm" if pre.spacing else " (resized)"
    v = result.validation
    if result.task == "segmentation":
        scores = [f"Validation split ({v['n_volumes']} volumes): Dice {v['dice']:.3f}, Jaccard {v['jaccard']:.3f}, "
                  f"lowest Dice {v['dice_min']:.3f}"]
    else:
        scores = ["", *evaluation_lines(result.evaluation)]
    lines = [
        "",
        f"Bundle written to {out}/ (task {card.task}, volumes)",
        f"  {card.architecture} at {grid}{spacing}, {pre.normalisation} intensities"
        + (f", classes {card.classes}" if result.task == "classification" else ""),
        f"  strategy {card.training.strategy}: trained {card.training.epochs_run} epochs in "
        f"{card.training.fit_time_s / 60:.1f} min; {card.kept_epoch}",
        "",
        *scores,
        "",
        "Files:",
        f"  {out / 'card.json'}  (model card)",
        *(f"  {out / path}" for name, path in sorted(card.files.items()) if name != "split"),
        "Next:",
        f"  lesionlens predict {out} VOLUME_OR_FOLDER",
    ]
    return "\n".join(lines)


def regression_summary(result: TrainResult) -> str:
    card, out = result.card, result.bundle
    reg = card.regression
    lines = [
        "",
        f"Bundle written to {out}/ (task regression)",
        f"  {card.architecture} at {card.preprocessing.image_size}px predicting {', '.join(reg.targets)} "
        f"({reg.loss} loss{', a box' if reg.box else ''})",
        run_line(result),
        "",
        *result.regression.lines(),
        "",
        "Files:",
        f"  {out / 'card.json'}  (model card)",
        *(f"  {out / path}" for name, path in sorted(card.files.items()) if name.startswith("regression_")),
        *([f"  {curves}"] if (curves := card.file("learning_curves")) else []),
        "Next:",
        f"  lesionlens predict {out} IMAGE_OR_FOLDER",
    ]
    return "\n".join(lines)
