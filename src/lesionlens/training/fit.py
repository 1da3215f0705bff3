"""Train a classifier from a RunConfig and write its bundle.

    files -> table (checked, split) -> decoded cache -> loaders -> Lightning fit
          -> best checkpoint -> model.safetensors + card.json + evaluation of the validation split
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from lesionlens.bundle import write_card
from lesionlens.config import RunConfig, load_config
from lesionlens.data.dataset import CachedImages, balanced_sampler, class_weights
from lesionlens.data.images import Preprocessing
from lesionlens.data.labels import apply_view
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.data.table import ImageTable
from lesionlens.data.transforms import train_transform
from lesionlens.evaluation.calibrate import fit_rule
from lesionlens.evaluation.evaluate import evaluate_model, write_evaluation
from lesionlens.models.registry import create_model, get_spec
from lesionlens.training.curves import LearningCurves, epoch_table, keep_log_for_resume, plot_learning_curves
from lesionlens.training.module import MONITOR_MODE, Classifier
from lesionlens.training.progress import EpochReport

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    bundle: Path
    validation: dict  # the validation split's metrics.json
    card: dict


def resolve_preprocessing(cfg: RunConfig) -> Preprocessing:
    pre = get_spec(cfg.model.name).preprocessing_for(cfg.model.pretrained)
    return pre.resized(cfg.model.image_size) if cfg.model.image_size else pre


def load_training_data(cfg: RunConfig, pre: Preprocessing, out: Path, progress: bool = True) -> PreparedData:
    """Read, relabel, decode (cached) and split the training data; test rows are left out."""
    if not cfg.data.path:
        raise ValueError("no training data: pass --data PATH (a folder, a CSV or an official layout)")
    table = read_table(cfg.data.path, cfg.data.format, cfg.data.images, cfg.data.group_column)
    table = apply_view(table, cfg.data.labels)
    if table.has_partitions() and (table.frame["partition"] == "test").any():
        test = (table.frame["partition"] == "test").to_numpy()
        log.info("leaving the %d test images of %s out of training", test.sum(), cfg.data.path)
        table = table.subset(~test)
    data = prepare(table, pre, cfg.data.on_bad_input, cfg.data.cache_dir,
                   report=out / "data_issues.csv", progress=progress)
    split = assign_partitions(data.table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.train.seed)
    return PreparedData(split, data.images)


def write_split(table: ImageTable, path: Path) -> None:
    cols = ["image_id", "partition", "label", "group", "sha256", "path"]
    table.frame[cols].to_csv(path, index=False)


def fingerprint(table: ImageTable) -> str:
    """sha256 over every image's content hash, label and partition, in a fixed order."""
    rows = sorted(zip(table.frame["sha256"], table.frame["label"], table.frame["partition"]))
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def split_counts(table: ImageTable) -> dict[str, dict[str, int]]:
    counts = table.frame.groupby(["partition", "label"]).size()
    return {p: {c: int(counts.get((p, c), 0)) for c in table.classes}
            for p in sorted(table.frame["partition"].unique())}


def train(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train, keep the best epoch by ``cfg.train.monitor`` and write the bundle to ``out``."""
    out = Path(out)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last_ckpt.is_file():
            raise FileNotFoundError(f"{last_ckpt}: nothing to resume (no checkpoint from an earlier run)")
        cfg = load_config(out / "config.yaml")
        log.info("resuming %s from %s", out, last_ckpt)
    elif last_ckpt.is_file():
        raise FileExistsError(f"{out} already holds a run; use --resume to continue it or another --out")
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    pre = resolve_preprocessing(cfg)
    data = load_training_data(cfg, pre, out, progress)
    table = data.table
    write_split(table, out / "split.csv")
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise ValueError(f"{cfg.data.path}: need both training and validation images, "
                         f"got {len(train_rows)} and {len(val_rows)}")
    targets = table.targets()
    classes = table.classes
    log.info("classes %s; train %d, validation %d images", classes, len(train_rows), len(val_rows))

    model = create_model(cfg.model.name, len(classes), pretrained=cfg.model.pretrained,
                         weights=cfg.model.weights, drop_rate=cfg.model.drop_rate,
                         frozen_stages=cfg.model.frozen_stages)
    log.info("model %s (%.2fM parameters) at %dpx, %s", cfg.model.name,
             sum(p.numel() for p in model.parameters()) / 1e6, pre.image_size,
             f"ImageNet weights from {model.pretrained_source}" if cfg.model.pretrained else "random initialisation")
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = build_loaders(cfg, pre, data, targets, train_rows, val_rows)
    weights = class_weights(targets[train_rows], len(classes), cfg.train.class_weights)
    prior = torch.tensor(np.bincount(targets[train_rows], minlength=len(classes)) / len(train_rows), dtype=torch.float32)
    module = Classifier(model, cfg.train, pre, weights, steps_per_epoch=len(train_loader), class_prior=prior)

    trainer, checkpoint = build_trainer(cfg, out, len(train_loader), resume, progress)
    fit_started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, ckpt_path=last_ckpt if resume else None, weights_only=True)
    fit_seconds = time.perf_counter() - fit_started

    best = checkpoint.best_model_path or str(last_ckpt)
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    model = module.model.cpu().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))

    description = f"{cfg.model.name} on {Path(cfg.data.path).name} (validation split, {len(val_rows)} images)"
    ev = evaluate_model(model, classes, pre, data, val_rows, description)
    ev, rule = fit_rule(ev)  # temperature and the 0.866-sensitivity operating points, on validation
    figures = write_evaluation(ev, out / "evaluation")
    plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor,
                         title=f"{cfg.model.name}, {pre.image_size}px, {cfg.train.optimizer} + {cfg.train.schedule}")
    history = epoch_table(out / "logs")
    summary = ev.summary()
    card = {
        "model": {
            "architecture": cfg.model.name, "num_classes": len(classes), "drop_rate": cfg.model.drop_rate,
            "frozen_stages": cfg.model.frozen_stages, "pretrained": cfg.model.pretrained,
            "pretrained_source": model.pretrained_source,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        },
        "classes": classes,
        "label_view": cfg.data.labels,
        "preprocessing": pre.to_dict(),
        "training": {
            "config": cfg.to_dict(),
            "epochs_run": int(trainer.current_epoch),
            "best_epoch": _best_epoch(history, cfg.train.monitor),
            "monitor": cfg.train.monitor,
            "best_score": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
            "stopped_early": bool(trainer.early_stopping_callback and trainer.early_stopping_callback.stopped_epoch),
            "fit_time_s": round(fit_seconds, 1),
            "total_time_s": round(time.perf_counter() - started, 1),
            "train_images_per_s": _median(history, "train_images_per_s"),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available()
            else f"cpu ({torch.get_num_threads()} threads)",
        },
        "data": {
            "path": str(cfg.data.path), "format": table.format, "fingerprint": fingerprint(table),
            "n_images": len(table), "counts": split_counts(table), "split_file": "split.csv",
            "split_seed": cfg.train.seed, "issues": len(table.issues),
        },
        **rule,
        "validation": {k: summary[k] for k in ("n_images", "accuracy", "balanced_accuracy", "macro_auc",
                                                "macro_auc_grade", "per_class", "binary")},
        "files": {name: str(p.relative_to(out)) for name, p in figures.items()}
                 | {"learning_curves": "learning_curves.png", "split": "split.csv"},
    }
    write_card(out, card)
    return TrainResult(out, summary, card)


def build_trainer(cfg: RunConfig, out: Path, steps_per_epoch: int, resume: bool,
                  progress: bool) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer with the best-epoch checkpoint, learning curves, CSV (and TensorBoard)
    logs, optional early stopping and a one-line-per-epoch report."""
    mode = MONITOR_MODE[cfg.train.monitor]
    checkpoint = ModelCheckpoint(out / "checkpoints", filename="best", monitor=cfg.train.monitor, mode=mode,
                                 save_last=True, save_top_k=1, enable_version_counter=False)
    callbacks = [checkpoint, LearningCurves(out / "logs", out / "learning_curves.png", cfg.train.monitor)]
    if progress:
        callbacks.append(EpochReport())
    if cfg.train.patience is not None:
        callbacks.append(EarlyStopping(cfg.train.monitor, mode=mode, patience=cfg.train.patience))
    last_ckpt = out / "checkpoints" / "last.ckpt"
    if resume:
        keep_log_for_resume(out / "logs", torch.load(last_ckpt, map_location="cpu", weights_only=True)["epoch"])
    loggers = [CSVLogger(out, name="", version="logs")]
    if _tensorboard_available():
        loggers.append(TensorBoardLogger(out / "logs", name="", version="tensorboard"))
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs,
        max_time={"minutes": cfg.train.max_minutes} if cfg.train.max_minutes else None,
        accelerator="auto", devices=1, precision="16-mixed" if torch.cuda.is_available() else "32-true",
        callbacks=callbacks, logger=loggers, log_every_n_steps=min(10, steps_per_epoch),
        enable_progress_bar=progress and sys.stderr.isatty(), enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return trainer, checkpoint


def build_loaders(cfg: RunConfig, pre: Preprocessing, data: PreparedData, targets: np.ndarray,
             train_rows: np.ndarray, val_rows: np.ndarray) -> tuple[DataLoader, DataLoader]:
    cache_rows = data.table.frame["cache_row"].to_numpy()
    train_ds = CachedImages(data.images.array, cache_rows[train_rows], targets[train_rows],
                            train_transform(cfg.augment))
    val_ds = CachedImages(data.images.array, cache_rows[val_rows], targets[val_rows], lambda x: x)
    sampler = balanced_sampler(targets[train_rows], cfg.train.seed) if cfg.train.sampler == "balanced" else None
    workers = cfg.data.num_workers
    if workers is None:
        workers = min(8, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0
    train_loader = DataLoader(
        train_ds, batch_size=cfg.train.batch_size, shuffle=sampler is None, sampler=sampler,
        num_workers=workers, persistent_workers=workers > 0, drop_last=len(train_ds) > cfg.train.batch_size,
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    val_loader = DataLoader(val_ds, batch_size=2 * cfg.train.batch_size, shuffle=False, num_workers=0)
    return train_loader, val_loader


def _best_epoch(history, monitor: str) -> int | None:
    if monitor not in history or history[monitor].isna().all():
        return None
    return int(history[monitor].idxmin() if monitor == "val_loss" else history[monitor].idxmax())


def _median(history, column: str) -> float | None:
    return round(float(history[column].median()), 2) if column in history and history[column].notna().any() else None


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
