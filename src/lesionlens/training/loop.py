"""The gradient-training loop on Lightning: loaders, the Trainer and its callbacks, and the fit that
returns the kept epoch's network.

    cached uint8 images -> loaders (augmentation, optional balanced sampler) -> Classifier
        -> Trainer (best and last checkpoints, CSV / TensorBoard logs, learning curves,
           gradual unfreezing, early stopping) -> the kept epoch's weights
"""

from __future__ import annotations

import os
import sys

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, RandomSampler

from lesionlens.config import RunConfig
from lesionlens.data.dataset import CachedImages, balanced_sampler, class_weights
from lesionlens.data.images import Preprocessing
from lesionlens.data.load import PreparedData
from lesionlens.data.transforms import train_transform
from lesionlens.training.averaging import ExponentialAveraging
from lesionlens.training.curves import LearningCurves, epoch_table, keep_log_for_resume, kept_epoch
from lesionlens.training.distributed import World, trainer_settings
from lesionlens.training.module import MONITOR_MODE, Classifier
from lesionlens.training.progress import EpochReport
from lesionlens.training.shards import GlobalBatchShard, StridedShard
from lesionlens.training.strategies import FreezePlan, GradualUnfreezing


def fit_network(cfg: RunConfig, out: Path, model: torch.nn.Module, plan: FreezePlan, pre: Preprocessing,
                data: PreparedData, targets: np.ndarray, train_rows: np.ndarray, val_rows: np.ndarray,
                resume: bool, progress: bool, world: World) -> tuple[torch.nn.Module, dict] | None:
    """Gradient training on Lightning; returns the kept epoch's model and what the card says of the run
    (in process 0; the other processes of a multi-process run get None once training is done)."""
    classes = data.table.classes
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_loader, val_loader = build_loaders(cfg, pre, data, targets, train_rows, val_rows, world)
    weights = class_weights(targets[train_rows], len(classes), cfg.train.class_weights)
    prior = torch.tensor(np.bincount(targets[train_rows], minlength=len(classes)) / len(train_rows), dtype=torch.float32)
    module = Classifier(model, cfg.train, pre, weights, steps_per_epoch=len(train_loader), class_prior=prior,
                        optimized=plan.optimized(), lr_scale=plan.lr_scale())
    return fit_module(cfg, out, module, train_loader, val_loader, plan, resume, progress, world)


def fit_module(cfg: RunConfig, out: Path, module: Classifier, train_loader: DataLoader, val_loader: DataLoader,
               plan: FreezePlan, resume: bool, progress: bool, world: World) -> tuple[torch.nn.Module, dict] | None:
    """Fit ``module`` (a Classifier or one of its kinds) and return its network at the kept epoch with
    the run's record for the card (process 0; the other processes get None)."""
    trainer, checkpoint = build_trainer(cfg, out, len(train_loader), resume, progress, plan, world)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    distinct_draws(cfg, world)
    trainer.fit(module, train_loader, val_loader, ckpt_path=last_ckpt if resume else None, weights_only=True)
    if not trainer.is_global_zero:
        return None

    history = epoch_table(out / "logs")
    run = load_kept(cfg, module, checkpoint, last_ckpt, history)
    stopped_early = bool(trainer.early_stopping_callback and trainer.early_stopping_callback.stopped_epoch)
    run |= {
        "epochs_run": int(trainer.current_epoch),
        "stopped_early": stopped_early,
        # Lightning's timer stops inside an epoch and still counts it: say that it was cut short
        "stopped_by_time": bool(cfg.train.max_minutes) and not stopped_early
        and trainer.global_step < cfg.train.epochs * len(train_loader),
        "train_images_per_s": median_of(history, "train_images_per_s"),
    }
    return module.model.cpu().eval(), run


def build_trainer(cfg: RunConfig, out: Path, steps_per_epoch: int, resume: bool,
                  progress: bool, plan: FreezePlan | None = None,
                  world: World = World(0, 1)) -> tuple[L.Trainer, ModelCheckpoint]:
    """A Lightning Trainer with the best-epoch checkpoint, learning curves, CSV (and TensorBoard)
    logs, optional early stopping and a one-line-per-epoch report."""
    mode = MONITOR_MODE[cfg.train.monitor]
    checkpoint = ModelCheckpoint(out / "checkpoints", filename="best", monitor=cfg.train.monitor, mode=mode,
                                 save_top_k=1, enable_version_counter=False)
    # Lightning's save_last rewrites last.ckpt only in epochs that improve the monitored metric, so
    # --resume would go back to the best epoch; this second callback writes it after every epoch.
    every_epoch = ModelCheckpoint(out / "checkpoints", filename="last", monitor=None, save_top_k=1,
                                  enable_version_counter=False)
    callbacks = [checkpoint, every_epoch]
    if cfg.train.keep_epochs:
        callbacks.append(KeepEveryEpoch(out / "checkpoints"))
    callbacks += [LearningCurves(out / "logs", out / "learning_curves.png", cfg.train.monitor,
                                 val_trained_on=cfg.data.train_on_val)]
    if plan is not None:
        callbacks.append(GradualUnfreezing(plan))
    if progress:
        callbacks.append(EpochReport())
    if cfg.train.ema_decay is not None:
        callbacks.append(ExponentialAveraging(cfg.train.ema_decay))
    if cfg.train.patience is not None:
        callbacks.append(EarlyStopping(cfg.train.monitor, mode=mode, patience=cfg.train.patience))
    last_ckpt = out / "checkpoints" / "last.ckpt"
    if resume and world.is_zero:
        keep_log_for_resume(out / "logs", torch.load(last_ckpt, map_location="cpu", weights_only=True)["epoch"])
    loggers = [CSVLogger(out, name="", version="logs")]
    if _tensorboard_available():
        loggers.append(TensorBoardLogger(out / "logs", name="", version="tensorboard"))
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs,
        max_time={"minutes": cfg.train.max_minutes} if cfg.train.max_minutes else None,
        **trainer_settings(cfg), callbacks=callbacks, logger=loggers, log_every_n_steps=min(10, steps_per_epoch),
        gradient_clip_val=cfg.train.gradient_clip, gradient_clip_algorithm="norm",
        enable_progress_bar=progress and sys.stderr.isatty(), enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return trainer, checkpoint


class KeepEveryEpoch(Callback):
    """``epoch-NN.ckpt`` after every validation (NN: Lightning's epoch index, one less than the log's
    epoch), written as the other checkpoints are: with weight averaging, the average in ``state_dict``
    and the raw weights in ``current_model_state``. (Not a third ModelCheckpoint: it would share
    ``last.ckpt``'s state key, which Lightning builds from the monitor and schedule alone.)"""

    def __init__(self, folder: Path):
        self.folder = folder

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.folder / f"epoch-{trainer.current_epoch:02d}.ckpt", weights_only=False)


def build_loaders(cfg: RunConfig, pre: Preprocessing, data: PreparedData, targets: np.ndarray,
                  train_rows: np.ndarray, val_rows: np.ndarray, world: World) -> tuple[DataLoader, DataLoader]:
    cache_rows = data.table.frame["cache_row"].to_numpy()
    train_ds = CachedImages(data.images.array, cache_rows[train_rows], targets[train_rows],
                            train_transform(cfg.augment))
    val_ds = CachedImages(data.images.array, cache_rows[val_rows], targets[val_rows], lambda x: x)
    sampler = balanced_sampler(targets[train_rows], cfg.train.seed) if cfg.train.sampler == "balanced" else None
    return sharded_loaders(cfg, train_ds, val_ds, sampler, 2 * cfg.train.batch_size, world)


def sharded_loaders(cfg: RunConfig, train_ds, val_ds, sampler, val_batch: int,
                    world: World) -> tuple[DataLoader, DataLoader]:
    """The training loader (shuffled, or drawn by ``sampler``) and the validation loader; under DDP,
    this process's share of each (:mod:`lesionlens.training.shards`)."""
    workers = cfg.data.num_workers
    if workers is None:
        workers = min(8, (os.cpu_count() or 1) - 1) if torch.cuda.is_available() else 0
    batch, drop_last = cfg.train.batch_size, len(train_ds) > cfg.train.batch_size
    generator = torch.Generator().manual_seed(cfg.train.seed)
    if world.distributed:
        # the one-process order, drawn alike by every process, then each process's slice of it
        order = sampler if sampler is not None else RandomSampler(train_ds, generator=generator)
        sampler = GlobalBatchShard(order, world.rank, world.size, batch, drop_last)
        batch, drop_last = batch // world.size, False
    train_loader = DataLoader(
        train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler,
        num_workers=workers, persistent_workers=workers > 0, drop_last=drop_last, generator=generator,
    )
    val_sampler = StridedShard(len(val_ds), world.rank, world.size) if world.distributed else None
    val_loader = DataLoader(val_ds, batch_size=val_batch, shuffle=False, sampler=val_sampler, num_workers=0)
    return train_loader, val_loader


def load_kept(cfg: RunConfig, module: L.LightningModule, checkpoint: ModelCheckpoint, last_ckpt: Path,
              history) -> dict:
    """Load the kept epoch's weights into ``module`` and return the card's ``best_epoch`` and
    ``best_score`` for them. The kept epoch is the best by ``train.monitor``; with
    ``data.train_on_val`` the validation images are training images, so no epoch is chosen on them:
    the last is kept and no score is claimed for it (``curves.kept_epoch``)."""
    held_out = not cfg.data.train_on_val
    path = (checkpoint.best_model_path or str(last_ckpt)) if held_out else str(last_ckpt)
    module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["state_dict"])
    score = checkpoint.best_model_score if held_out else None
    return {"best_epoch": kept_epoch(history, cfg.train.monitor, cfg.data.train_on_val),
            "best_score": float(score) if score is not None else None}


def median_of(history, column: str) -> float | None:
    return round(float(history[column].median()), 2) if column in history and history[column].notna().any() else None


def distinct_draws(cfg: RunConfig, world: World) -> None:
    """Every process starts from the same seed (the same initial weights, the same epoch order);
    from here each draws its own augmentation and dropout, as one process draws them per image."""
    if world.distributed and world.rank:
        torch.manual_seed(cfg.train.seed + world.rank)


def _tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
