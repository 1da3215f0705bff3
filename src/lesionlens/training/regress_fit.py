"""Train a network to predict numbers per image (``--task regression --target COLUMNS``) and write
its bundle.

    table + its numeric target columns (checked per row) -> decoded images (cache) -> split
        -> any registered model with one output per target (standardised by the training mean and
           standard deviation) -> Lightning fit (the kept epoch by validation MAE)
        -> model.safetensors + split.csv + card.json (task regression, targets and their scale)
           + the regression evaluation of the validation split against the training median
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from lesionlens.bundle.card import WEIGHTS, write_card
from lesionlens.bundle.schema import DataInfo, ModelInfo, RegressionInfo, TrainingInfo, ValidationInfo
from lesionlens.bundle.split import SPLIT_FILE, fingerprint, split_counts
from lesionlens.config import ConfigError, RunConfig
from lesionlens.data.dataset import CachedImages
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.data.targets import store_targets, stored_targets, target_columns
from lesionlens.data.transforms import train_transform
from lesionlens.evaluation.regression import RegressionEvaluation
from lesionlens.evaluation.regression_report import write_regression_report
from lesionlens.inference import predict_logits
from lesionlens.quality.leakage import check_split, enforce
from lesionlens.training.distributed import World, device_description

log = logging.getLogger(__name__)

REGRESSION_MONITORS = ("val_mae", "val_loss")
REGRESSION_STRATEGIES = ("full", "scratch", "baseline", "shallow", "deep")


def check_regression(cfg: RunConfig) -> None:
    """Refuse what a regression run cannot honour, before any data is read. A run that monitors a
    class metric monitors ``val_mae`` instead; a box's run turns off the geometric augmentation
    (a flip, turn, shift or zoom moves the box); both say so."""
    columns = target_columns(cfg.data.target)
    if cfg.model.lesion_crop:
        raise ConfigError("--task regression: model.lesion_crop (crop-then-classify) is for classifiers")
    if cfg.train.strategy not in REGRESSION_STRATEGIES:
        raise ConfigError(f"--task regression: strategy must be one of {list(REGRESSION_STRATEGIES)} (features fits a "
                          f"scikit-learn classifier), got {cfg.train.strategy!r}")
    if cfg.train.sampler != "shuffle":
        raise ConfigError("--task regression: the balanced sampler draws classes equally often; use shuffle")
    if cfg.regression.box:
        if len(columns) != 4:
            raise ConfigError(f"regression.box: a box has four targets (x0, y0, x1, y1), got {list(columns)}")
        if cfg.model.tta != "none":
            raise ConfigError("regression.box: test-time augmentation flips and turns the image but not the box; "
                              "use model.tta none")
        a = cfg.augment
        if a.hflip or a.vflip or a.rotation or a.translate or tuple(a.zoom) != (1.0, 1.0):
            log.info("regression.box: geometric augmentation off (flips, rotation, shift and zoom move the box); "
                     "colour jitter stays")
            cfg.augment = replace(a, hflip=0.0, vflip=0.0, rotation=0.0, translate=0.0, zoom=(1.0, 1.0))
    if cfg.train.monitor not in REGRESSION_MONITORS:
        log.info("regression: monitoring val_mae (the configuration's %s is a classification metric)",
                 cfg.train.monitor)
        cfg.train.monitor = "val_mae"


def load_regression_data(cfg: RunConfig, pre, out: Path, progress: bool = True,
                         world: World = World(0, 1)) -> tuple[PreparedData, np.ndarray, object]:
    """Read the table and its targets, decode the images (cached), split, check for leakage. A row
    whose image or target is unusable is an issue, handled by ``data.on_bad_input``. Returns the
    data, the targets (N x K, the table's row order) and the leakage check."""
    if not cfg.data.path:
        raise ValueError("no training data: pass --data PATH (a CSV of images with numeric columns, or an official "
                         "layout whose metadata has the target, e.g. HAM10000's age)")
    columns = target_columns(cfg.data.target)
    table = read_table(cfg.data.path, cfg.data.format, cfg.data.images, cfg.data.group_column, targets=columns)
    if table.has_partitions() and (table.frame["partition"] == "test").any():
        test = (table.frame["partition"] == "test").to_numpy()
        log.info("leaving the %d test images of %s out of training", test.sum(), cfg.data.path)
        table = table.subset(~test)
    store_targets(table, columns)
    data = prepare(table, pre, cfg.data.on_bad_input, cfg.data.cache_dir,
                   report=out / "data_issues.csv" if world.is_zero else None, progress=progress and world.is_zero)
    split = assign_partitions(data.table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.split_seed())
    leakage = check_split(split, data.images.array)
    enforce(leakage, cfg.data.allow_leakage, f"{cfg.data.path}: the training split")
    targets = stored_targets(split, columns)
    return PreparedData(split, data.images), targets, leakage


def train_regression(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
                     world: World = World(0, 1)):
    """Train (``cfg.train.task`` regression), keep the epoch with the lowest validation MAE, write the
    bundle (process 0 of a multi-process run; the others return None). Called by
    :func:`lesionlens.training.fit.train`."""
    import lightning as L

    from lesionlens.models.freeze import set_trainable
    from lesionlens.models.registry import create_model
    from lesionlens.training.curves import plot_learning_curves
    from lesionlens.training.fit import TrainResult, resolve_preprocessing, split_rows
    from lesionlens.training.loop import fit_module, sharded_loaders
    from lesionlens.training.regress_module import Regressor
    from lesionlens.training.strategies import plan_strategy

    started = time.perf_counter()
    check_regression(cfg)
    columns = list(target_columns(cfg.data.target))
    out.mkdir(parents=True, exist_ok=True)
    if world.is_zero:
        cfg.save(out / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    pre = resolve_preprocessing(cfg)
    data, targets, leakage = load_regression_data(cfg, pre, out, progress, world)
    table = data.table
    train_rows, val_rows = split_rows(cfg, data, out, world)
    mean = targets[train_rows].mean(axis=0)
    std = targets[train_rows].std(axis=0)
    if (std == 0).any():
        constant = [c for c, s in zip(columns, std) if s == 0]
        raise ValueError(f"{cfg.data.path}: target {constant} has one value on every training image; "
                         "there is nothing to learn")
    baseline = np.median(targets[train_rows], axis=0)
    model = create_model(cfg.model.name, len(columns), pretrained=cfg.model.pretrained, weights=cfg.model.weights,
                         drop_rate=cfg.model.drop_rate, head=cfg.model.head, image_size=pre.image_size)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("about to train %s (strategy %s, %s loss) to predict %s for %d epochs at %d px on %d images, "
             "validating on %d; %.2fM parameters, %s", cfg.model.name, cfg.train.strategy, cfg.regression.loss,
             ", ".join(columns), cfg.train.epochs, pre.image_size, len(train_rows), len(val_rows), parameters / 1e6,
             f"ImageNet weights from {model.pretrained_source}" if cfg.model.pretrained else "random initialisation")
    log.info("training targets: %s", "; ".join(f"{c} mean {m:.4g}, sd {s:.4g}, median {b:.4g}"
                                                for c, m, s, b in zip(columns, mean, std, baseline)))
    plan = plan_strategy(model, cfg)
    set_trainable(model, plan.trainable_at(0))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    cache_rows = table.frame["cache_row"].to_numpy()
    train_ds = CachedImages(data.images.array, cache_rows[train_rows], targets[train_rows].astype(np.float32),
                            train_transform(cfg.augment))
    val_ds = CachedImages(data.images.array, cache_rows[val_rows], targets[val_rows].astype(np.float32),
                          lambda x: x)
    train_loader, val_loader = sharded_loaders(cfg, train_ds, val_ds, None, 2 * cfg.train.batch_size, world)
    module = Regressor(model, cfg.train, cfg.regression, pre, len(train_loader), mean, std,
                       optimized=plan.optimized(), lr_scale=plan.lr_scale())
    fit_started = time.perf_counter()
    fitted = fit_module(cfg, out, module, train_loader, val_loader, plan, resume, progress, world)
    if fitted is None:
        return None
    model, run = fitted
    fit_seconds = time.perf_counter() - fit_started
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))

    outputs = predict_logits(model, data.images.array, pre, cache_rows[val_rows], tta=cfg.model.tta)
    info = RegressionInfo(columns, mean.tolist(), std.tolist(), baseline.tolist(), cfg.regression.loss,
                          cfg.regression.box)
    seen = ", also trained on" if cfg.data.train_on_val else ""
    evaluation = RegressionEvaluation(
        columns, targets[val_rows], info.values(outputs), baseline,
        table.frame["image_id"].astype(str).to_numpy()[val_rows].tolist(),
        description=f"{cfg.model.name} on {Path(cfg.data.path).name}: validation split{seen}",
        box=cfg.regression.box, seed=cfg.train.seed)
    written = write_regression_report(evaluation, out / "regression")
    files = {"split": SPLIT_FILE, **{f"regression_{k}": str(p.relative_to(out)) for k, p in written.items()}}
    if plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor,
                            title=f"{cfg.model.name}, {pre.image_size}px, {cfg.regression.loss} loss",
                            val_trained_on=cfg.data.train_on_val):
        files["learning_curves"] = "learning_curves.png"
    card = write_card(
        out, task="regression",
        model=ModelInfo(cfg.model.name, len(columns), cfg.model.head, cfg.model.drop_rate, cfg.model.pretrained,
                        model.pretrained_source, parameters, trainable),
        classes=columns, label_view="all", preprocessing=pre, tta=cfg.model.tta,
        training=TrainingInfo(
            config=cfg.to_dict(), strategy=cfg.train.strategy, monitor=cfg.train.monitor,
            fit_time_s=round(fit_seconds, 1), total_time_s=round(time.perf_counter() - started, 1),
            device=device_description(),
            freeze_schedule=plan.schedule(cfg.train.epochs), **run),
        dataset=DataInfo(str(cfg.data.path), table.format, fingerprint(table), len(table), split_counts(table),
                         SPLIT_FILE, cfg.split_seed(), len(table.issues), leakage.record(cfg.data.allow_leakage)),
        validation=ValidationInfo(len(val_rows), None, None, None, seen_in_training=cfg.data.train_on_val),
        calibration=None, operating_points={}, files=files,
        regression=replace(info, validation=evaluation.summary),
    )
    return TrainResult(out, card, None, None, regression=evaluation)
