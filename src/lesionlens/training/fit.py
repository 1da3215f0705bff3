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
from lesionlens.config import ConfigError, RunConfig, load_config
from lesionlens.data.dataset import CachedImages, balanced_sampler, class_weights
from lesionlens.data.images import Preprocessing
from lesionlens.data.labels import apply_view
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.data.table import ImageTable
from lesionlens.data.transforms import train_transform
from lesionlens.evaluation.calibrate import fit_rule
from lesionlens.evaluation.evaluate import evaluate_model, write_evaluation
from lesionlens.models.freeze import set_trainable
from lesionlens.models.registry import create_model, get_spec
from lesionlens.training.curves import LearningCurves, epoch_table, keep_log_for_resume, plot_learning_curves
from lesionlens.training.module import MONITOR_MODE, Classifier
from lesionlens.training.features import fit_embedding_classifier
from lesionlens.training.progress import EpochReport
from lesionlens.training.strategies import FreezePlan, GradualUnfreezing, check_strategy, plan_strategy

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    bundle: Path
    validation: dict  # the validation split's metrics.json
    card: dict


def resolve_preprocessing(cfg: RunConfig) -> Preprocessing:
    spec = get_spec(cfg.model.name)
    pre = spec.preprocessing_for(cfg.model.pretrained)
    pre = pre.resized(cfg.model.image_size) if cfg.model.image_size else pre
    spec.check_input_size(pre.image_size)
    return pre


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
    """The split as a table that ``--data`` reads again: image paths are made absolute, because a
    CSV's relative paths are read relative to the CSV's own folder, not to where training ran."""
    cols = ["image_id", "partition", "label", "group", "sha256", "path"]
    frame = table.frame[cols].copy()
    frame["path"] = [str(Path(p).resolve()) if p else p for p in frame["path"]]
    frame.to_csv(path, index=False)


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
    elif last_ckpt.is_file() or (out / "card.json").is_file():  # a features run has no checkpoint
        raise FileExistsError(f"{out} already holds a run; use --resume to continue it or another --out")
    check_strategy(cfg)  # before any data is read: a combination that cannot run fails at once
    if cfg.data.train_on_val and cfg.train.patience is not None:
        raise ConfigError("data.train_on_val keeps the last epoch: it cannot be combined with early stopping "
                          "(train.patience)")
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
    if cfg.data.train_on_val:
        log.warning("data.train_on_val: training on the %d validation images too; the last epoch is kept and "
                    "the validation figures are not a held-out estimate", len(val_rows))
        train_rows = np.concatenate([train_rows, val_rows])

    model = create_model(cfg.model.name, len(classes), pretrained=cfg.model.pretrained,
                         weights=cfg.model.weights, drop_rate=cfg.model.drop_rate,
                         head=cfg.model.head, image_size=pre.image_size)
    log.info("model %s (%.2fM parameters) at %dpx, %s; strategy %s", cfg.model.name,
             sum(p.numel() for p in model.parameters()) / 1e6, pre.image_size,
             f"ImageNet weights from {model.pretrained_source}" if cfg.model.pretrained else "random initialisation",
             cfg.train.strategy)
    plan = plan_strategy(model, cfg)
    set_trainable(model, plan.trainable_at(0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    fit_started = time.perf_counter()
    if cfg.train.strategy == "features":
        cache_rows = table.frame["cache_row"].to_numpy()
        model, fitted = fit_embedding_classifier(model, cfg.train.features_classifier, data.images.array,
                                                 cache_rows[train_rows], targets[train_rows], pre, len(classes),
                                                 cfg.train.seed)
        fit_seconds = time.perf_counter() - fit_started
        run = {"epochs_run": 0, "best_epoch": None, "best_score": None, "stopped_early": False,
               "train_images_per_s": round(len(train_rows) / max(fit_seconds, 1e-9), 2)}
    else:
        fitted = None
        model, run = _fit_network(cfg, out, model, plan, pre, data, targets, train_rows, val_rows, resume, progress)
        fit_seconds = time.perf_counter() - fit_started
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))

    seen = ", also trained on" if cfg.data.train_on_val else ""
    seen += f", TTA {cfg.model.tta}" if cfg.model.tta != "none" else ""
    description = f"{cfg.model.name} on {Path(cfg.data.path).name} (validation split, {len(val_rows)} images{seen})"
    ev = evaluate_model(model, classes, pre, data, val_rows, description, tta=cfg.model.tta)
    ev, rule = fit_rule(ev)  # temperature and the 0.866-sensitivity operating points, on validation
    figures = write_evaluation(ev, out / "evaluation")
    files = {"split": "split.csv"}
    if fitted is None:
        plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor,
                             title=f"{cfg.model.name}, {pre.image_size}px, {cfg.train.optimizer} + {cfg.train.schedule}")
        files["learning_curves"] = "learning_curves.png"
    summary = ev.summary()
    card = {
        "model": {
            "architecture": cfg.model.name, "num_classes": len(classes), "drop_rate": cfg.model.drop_rate,
            "head": cfg.model.head, "pretrained": cfg.model.pretrained,
            "pretrained_source": model.pretrained_source,
            "parameters": sum(p.numel() for p in model.parameters()),
            "trainable_parameters": trainable,
            **({"features_classifier": fitted} if fitted else {}),
        },
        "classes": classes,
        "label_view": cfg.data.labels,
        "preprocessing": pre.to_dict(),
        "inference": {"tta": cfg.model.tta},
        "training": {
            "config": cfg.to_dict(),
            "strategy": cfg.train.strategy,
            # epoch -> the blocks trainable from then on (stem, stage N, top; "last layer" for baseline)
            "freeze_schedule": plan.schedule(cfg.train.epochs if fitted is None else 1),
            **run,
            "monitor": cfg.train.monitor,
            "fit_time_s": round(fit_seconds, 1),
            "total_time_s": round(time.perf_counter() - started, 1),
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
                                                "macro_auc_grade", "per_class", "binary")}
        | {"seen_in_training": cfg.data.train_on_val},
        "files": {name: str(p.relative_to(out)) for name, p in figures.items()} | files,
    }
    write_card(out, card)
    return TrainResult(out, summary, card)


def _fit_network(cfg: RunConfig, out: Path, model: torch.nn.Module, plan: FreezePlan, pre: Preprocessing,
                 data: PreparedData, targets: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
                 resume: bool, progress: bool) -> tuple[torch.nn.Module, dict]:
    """Gradient training on Lightning; returns the best epoch's model and what the card says of the run."""
    classes = data.table.classes
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = build_loaders(cfg, pre, data, targets, train_rows, val_rows)
    weights = class_weights(targets[train_rows], len(classes), cfg.train.class_weights)
    prior = torch.tensor(np.bincount(targets[train_rows], minlength=len(classes)) / len(train_rows), dtype=torch.float32)
    module = Classifier(model, cfg.train, pre, weights, steps_per_epoch=len(train_loader), class_prior=prior,
                        optimized=plan.optimized(), lr_scale=plan.lr_scale())
    trainer, checkpoint = build_trainer(cfg, out, len(train_loader), resume, progress, plan)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, train_loader, val_loader, ckpt_path=last_ckpt if resume else None, weights_only=True)

    # With data.train_on_val the validation images are training images: no epoch is chosen on them.
    best = str(last_ckpt) if cfg.data.train_on_val else (checkpoint.best_model_path or str(last_ckpt))
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=True)["state_dict"])
    history = epoch_table(out / "logs")
    kept = int(history.index[-1]) if cfg.data.train_on_val else _best_epoch(history, cfg.train.monitor)
    run = {
        "epochs_run": int(trainer.current_epoch),
        "best_epoch": kept,
        "best_score": (float(checkpoint.best_model_score)
                       if checkpoint.best_model_score is not None and not cfg.data.train_on_val else None),
        "stopped_early": bool(trainer.early_stopping_callback and trainer.early_stopping_callback.stopped_epoch),
        "train_images_per_s": _median(history, "train_images_per_s"),
    }
    return module.model.cpu().eval(), run


def build_trainer(cfg: RunConfig, out: Path, steps_per_epoch: int, resume: bool,
                  progress: bool, plan: FreezePlan | None = None) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer with the best-epoch checkpoint, learning curves, CSV (and TensorBoard)
    logs, optional early stopping and a one-line-per-epoch report."""
    mode = MONITOR_MODE[cfg.train.monitor]
    checkpoint = ModelCheckpoint(out / "checkpoints", filename="best", monitor=cfg.train.monitor, mode=mode,
                                 save_top_k=1, enable_version_counter=False)
    # Lightning's save_last rewrites last.ckpt only in epochs that improve the monitored metric, so
    # --resume would go back to the best epoch; this second callback writes it after every epoch.
    every_epoch = ModelCheckpoint(out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                  enable_version_counter=False)
    callbacks = [checkpoint, every_epoch, LearningCurves(out / "logs", out / "learning_curves.png", cfg.train.monitor)]
    if plan is not None:
        callbacks.append(GradualUnfreezing(plan))
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
