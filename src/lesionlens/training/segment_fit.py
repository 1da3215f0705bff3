"""Train a segmentation or multi-task network from a RunConfig and write its bundle.

    image / mask table (checked) -> decoded images (cache) + masks at the same geometry -> split
        -> U-Net on the registry's encoder (lesionlens.models.unet) -> Lightning fit (the kept epoch
           by validation Jaccard, or by the class metric a multi-task run monitors)
        -> model.safetensors + split.csv + card.json (task, mask head) + the segmentation evaluation
           of the validation split (and, multi-task, the classification evaluation and decision rule)
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from lesionlens.bundle.card import WEIGHTS, write_card
from lesionlens.bundle.schema import DataInfo, ModelInfo, SegmentationInfo, TrainingInfo, ValidationInfo
from lesionlens.bundle.split import SPLIT_FILE, fingerprint, split_counts
from lesionlens.config import ConfigError, RunConfig
from lesionlens.data.dataset import CachedPairs, class_weights
from lesionlens.data.images import Preprocessing
from lesionlens.data.labels import apply_view
from lesionlens.data.load import PreparedData, prepare
from lesionlens.data.pairs import aligned_masks, attach_masks, load_masks, read_mask_table
from lesionlens.data.splits import assign_partitions
from lesionlens.data.transforms import train_transform
from lesionlens.inference import predict_mask_probabilities
from lesionlens.models.unet import ClassifierView, create_unet
from lesionlens.quality.leakage import check_split, enforce
from lesionlens.training.curves import plot_learning_curves
from lesionlens.training.distributed import World, device_description
from lesionlens.training.loop import sharded_loaders

log = logging.getLogger(__name__)

SEGMENTATION_MONITORS = ("val_jaccard", "val_loss")
SEGMENTATION_STRATEGIES = ("full", "scratch")


def check_segmentation(cfg: RunConfig) -> None:
    """Refuse settings a segmentation or multi-task run cannot honour, before any data is read; a
    segmentation run that monitors a class metric monitors ``val_jaccard`` instead (and says so)."""
    if cfg.model.lesion_crop:
        raise ConfigError(f"--task {cfg.train.task}: model.lesion_crop (crop-then-classify) is for classifiers; a "
                          "segmentation network sees the whole image")
    if cfg.train.strategy not in SEGMENTATION_STRATEGIES:
        raise ConfigError(f"--task {cfg.train.task} trains the whole U-Net: strategy must be one of "
                          f"{list(SEGMENTATION_STRATEGIES)}, got {cfg.train.strategy!r}")
    if cfg.model.frozen_stages:
        raise ConfigError(f"--task {cfg.train.task}: model.frozen_stages is not supported (the decoder reads "
                          "every stage)")
    if cfg.model.head != "linear":
        raise ConfigError(f"--task {cfg.train.task} keeps the architecture's own head (linear), got {cfg.model.head!r}")
    if cfg.train.sampler != "shuffle":
        raise ConfigError(f"--task {cfg.train.task}: the balanced sampler is for classification; use shuffle")
    if cfg.train.task == "segmentation" and cfg.train.monitor not in SEGMENTATION_MONITORS:
        log.info("segmentation: monitoring val_jaccard (the configuration's %s is a classification metric)",
                 cfg.train.monitor)
        cfg.train.monitor = "val_jaccard"


def load_segmentation_data(cfg: RunConfig, pre: Preprocessing, out: Path, progress: bool = True,
                           world: World = World(0, 1)) -> tuple[PreparedData, np.ndarray, object]:
    """Read the image / mask table, decode the images (cached) and their masks, split and check for
    leakage. Returns the data, the masks in the table's row order, and the leakage check."""
    if not cfg.data.path:
        raise ValueError("no training data: pass --data PATH (ISIC 2017 Part 1 layout, DATA/images + DATA/masks, "
                         "or a CSV with a mask column)")
    table, folders = read_mask_table(cfg.data.path, cfg.data.format, cfg.data.images, cfg.data.group_column)
    if cfg.data.masks:
        folders = [Path(cfg.data.masks).expanduser(), *folders]
        if not folders[0].is_dir():
            raise FileNotFoundError(f"{folders[0]}: no such mask folder")
    if cfg.train.task == "multitask":
        table = apply_view(table, cfg.data.labels)
    if table.has_partitions() and (table.frame["partition"] == "test").any():
        test = (table.frame["partition"] == "test").to_numpy()
        log.info("leaving the %d test images of %s out of training", test.sum(), cfg.data.path)
        table = table.subset(~test)
    table = attach_masks(table, folders)
    masks = load_masks(table, pre)
    data = prepare(table, pre, cfg.data.on_bad_input, cfg.data.cache_dir,
                   report=out / "data_issues.csv" if world.is_zero else None, progress=progress and world.is_zero)
    split = assign_partitions(data.table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.split_seed())
    leakage = check_split(split, data.images.array)
    enforce(leakage, cfg.data.allow_leakage, f"{cfg.data.path}: the training split")
    return PreparedData(split, data.images), aligned_masks(split, masks), leakage


def build_pair_loaders(cfg: RunConfig, data: PreparedData, masks: np.ndarray, targets: np.ndarray,
                       train_rows: np.ndarray, val_rows: np.ndarray, world: World) -> tuple[DataLoader, DataLoader]:
    cache_rows = data.table.frame["cache_row"].to_numpy()
    train_ds = CachedPairs(data.images.array, cache_rows[train_rows], masks[train_rows], targets[train_rows],
                           train_transform(cfg.augment))
    val_ds = CachedPairs(data.images.array, cache_rows[val_rows], masks[val_rows], targets[val_rows])
    return sharded_loaders(cfg, train_ds, val_ds, None, cfg.train.batch_size, world)


def train_segmentation(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
                       world: World = World(0, 1)):
    """Train (``cfg.train.task`` segmentation or multitask), keep the best epoch (the last with
    ``data.train_on_val``), write the bundle (process 0 of a multi-process run; the others return
    None). Called by :func:`lesionlens.training.fit.train`, which has checked the strategy."""
    import lightning as L

    from lesionlens.evaluation.calibrate import fit_rule
    from lesionlens.evaluation.evaluate import evaluate_model
    from lesionlens.evaluation.files import write_evaluation
    from lesionlens.training.curves import epoch_table
    from lesionlens.training.fit import TrainResult, resolve_preprocessing, split_rows
    from lesionlens.training.loop import build_trainer, distinct_draws, load_kept, median_of
    from lesionlens.training.segment_module import Segmenter

    started = time.perf_counter()
    check_segmentation(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if world.is_zero:
        cfg.save(out / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    multitask = cfg.train.task == "multitask"
    pre = resolve_preprocessing(cfg)
    data, masks, leakage = load_segmentation_data(cfg, pre, out, progress, world)
    table = data.table
    train_rows, val_rows = split_rows(cfg, data, out, world)
    targets, classes = table.targets(), table.classes
    model = create_unet(cfg.model.name, len(classes), multitask=multitask, pretrained=cfg.model.pretrained,
                        weights=cfg.model.weights, drop_rate=cfg.model.drop_rate,
                        decoder_width=cfg.segment.decoder_width, upsample=cfg.segment.upsample)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("about to train a U-Net (%s encoder, %s decoder from width %d, loss %s%s) for %d epochs at %d px on "
             "%d images, validating on %d; %.2fM parameters, %s", cfg.model.name, cfg.segment.upsample,
             cfg.segment.decoder_width, cfg.segment.loss, " + classification" if multitask else "",
             cfg.train.epochs, pre.image_size, len(train_rows), len(val_rows), parameters / 1e6,
             f"ImageNet weights from {model.pretrained_source}" if cfg.model.pretrained else "random initialisation")
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = build_pair_loaders(cfg, data, masks, targets, train_rows, val_rows, world)
    prior = torch.tensor(np.bincount(targets[train_rows], minlength=len(classes)) / len(train_rows),
                         dtype=torch.float32)
    weights = class_weights(targets[train_rows], len(classes), cfg.train.class_weights) if multitask else None
    module = Segmenter(model, cfg.train, cfg.segment, pre, len(train_loader), multitask=multitask,
                       class_weights=weights, class_prior=prior)
    trainer, checkpoint = build_trainer(cfg, out, len(train_loader), resume, progress, world=world)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    fit_started = time.perf_counter()
    distinct_draws(cfg, world)
    trainer.fit(module, train_loader, val_loader, ckpt_path=last_ckpt if resume else None, weights_only=True)
    fit_seconds = time.perf_counter() - fit_started
    if not trainer.is_global_zero:
        return None
    history = epoch_table(out / "logs")
    kept = load_kept(cfg, module, checkpoint, last_ckpt, history)
    model = module.model.cpu().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))

    segmentation = evaluate_masks(model, data, masks, val_rows, pre, cfg, out / "segmentation")
    files = {"split": SPLIT_FILE, **segmentation["files"]}
    title = f"U-Net on {cfg.model.name}, {pre.image_size}px, {cfg.segment.loss}"
    if plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor, title=title,
                            val_trained_on=cfg.data.train_on_val):
        files["learning_curves"] = "learning_curves.png"
    validation = ValidationInfo(len(val_rows), None, None, None, seen_in_training=cfg.data.train_on_val)
    calibration, operating_points, written = None, {}, None
    if multitask:
        ev = evaluate_model(ClassifierView(model), classes, pre, data, val_rows,
                            f"multi-task {cfg.model.name} on {Path(cfg.data.path).name} (validation split)")
        ev, rule = fit_rule(ev, held_out=not cfg.data.train_on_val)
        written = write_evaluation(ev, out / "evaluation")
        m = written.metrics
        validation = ValidationInfo(m["n_images"], m["accuracy"], m["balanced_accuracy"], m["macro_auc"],
                                    m["macro_auc_grade"], m["per_class"], m["binary"], cfg.data.train_on_val)
        calibration, operating_points = rule.calibration, rule.operating_points
        files |= {name: str(p.relative_to(out)) for name, p in written.files.items()}
    card = write_card(
        out, task=cfg.train.task,
        model=ModelInfo(f"{cfg.model.name}", len(classes), "linear", cfg.model.drop_rate, cfg.model.pretrained,
                        model.pretrained_source, parameters, parameters),
        classes=classes, label_view=cfg.data.labels if multitask else "all", preprocessing=pre, tta=cfg.model.tta,
        training=TrainingInfo(
            config=cfg.to_dict(), strategy=cfg.train.strategy, monitor=cfg.train.monitor,
            fit_time_s=round(fit_seconds, 1), total_time_s=round(time.perf_counter() - started, 1),
            device=device_description(),
            epochs_run=int(trainer.current_epoch), **kept,
            train_images_per_s=median_of(history, "train_images_per_s")),
        dataset=DataInfo(str(cfg.data.path), table.format, fingerprint(table), len(table), split_counts(table),
                         SPLIT_FILE, cfg.split_seed(), len(table.issues), leakage.record(cfg.data.allow_leakage)),
        validation=validation, calibration=calibration, operating_points=operating_points, files=files,
        segmentation=SegmentationInfo(cfg.segment.threshold, cfg.segment.keep_largest, cfg.segment.loss,
                                      cfg.segment.upsample, cfg.segment.decoder_width, segmentation["summary"]),
    )
    return TrainResult(out, card, written, None, segmentation=segmentation["evaluation"])


def evaluate_masks(model, data: PreparedData, masks: np.ndarray, rows: np.ndarray, pre: Preprocessing,
                   cfg: RunConfig, out: Path) -> dict:
    """The validation split's predicted masks against the true ones: metrics, report, per-image CSV."""
    from lesionlens.evaluation.mask_ops import postprocess_mask
    from lesionlens.evaluation.segmentation import evaluate_segmentation
    from lesionlens.evaluation.segmentation_report import write_segmentation_report

    cache_rows = data.table.frame["cache_row"].to_numpy()[rows]
    probabilities = predict_mask_probabilities(model, data.images.array, pre, cache_rows, tta=cfg.model.tta)
    predicted = postprocess_mask(probabilities, cfg.segment.threshold, keep_largest=cfg.segment.keep_largest,
                                 fill_holes=cfg.segment.keep_largest)
    ids = data.table.frame["image_id"].astype(str).to_numpy()[rows].tolist()
    evaluation = evaluate_segmentation(masks[rows], predicted, ids, seed=cfg.train.seed,
                                       description=f"U-Net on {cfg.model.name}: validation split, {len(rows)} images")
    written = write_segmentation_report(evaluation, data.images.array[cache_rows], out)
    root = out.parent
    saved = evaluation.to_dict()
    return {"summary": {"counts": saved["counts"], **saved["summary"]},
            "files": {f"segmentation_{k}": str(Path(p).relative_to(root)) for k, p in written.items()},
            "evaluation": evaluation}
