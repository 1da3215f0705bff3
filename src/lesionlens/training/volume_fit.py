"""Train a 3D classifier or a 3D U-Net on NIfTI volumes and write its bundle.

    CSV of volumes (labels, or masks) -> checked table -> volumes preprocessed into memory
        (lesionlens.data.volume_load) -> split (stratified, grouped) -> a 3D model of the registry
        -> Lightning fit with MONAI augmentation (the kept epoch by the monitored metric)
        -> model.safetensors + split.csv + card.json (the VolumePreprocessing: grid, spacing,
           normalisation) + the validation split's evaluation (classes: the classification
           evaluation and decision rule; masks: per-volume Dice and Jaccard)

It reuses the 2D run's pieces where they fit: the table, splits, split file and fingerprint; the
LightningModules (:class:`~lesionlens.training.module.Classifier` and
:class:`~lesionlens.training.segment_module.Segmenter`, which bring the optimizer, schedule, class
weights and validation metrics), the Trainer and its checkpoints; the classification evaluation,
calibration and card. Only the input differs: float volumes, already normalised, instead of uint8
images standardised on the device. The image-hash leakage check of 2D splits does not apply to
volumes; groups (``group`` / ``patient_id`` columns) still keep a subject's volumes on one side.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lesionlens.bundle.card import Card
from lesionlens.config import ConfigError, RunConfig
from lesionlens.data.targets import store_targets, stored_targets, target_columns
from lesionlens.data.volume_load import VolumeData, prepare_volumes, read_volume_table
from lesionlens.data.volume_transforms import VolumeAugment
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.training.mixing import check_mixing
from lesionlens.training.module import Classifier
from lesionlens.training.progressive import check_progressive
from lesionlens.training.regress_module import Regressor
from lesionlens.training.segment_module import Segmenter

log = logging.getLogger(__name__)

VOLUME_STRATEGIES = ("full", "scratch")  # every 3D model trains whole, from random weights


class VolumeClassifier(Classifier):
    """The classifier's training on volumes: batches are (N x 1 x D x H x W float32, class index)."""

    def model_input(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes  # float32 already, normalised by the reader


class VolumeSegmenter(Segmenter):
    """The segmenter's training on volumes: batches are (volumes, N x 1 x D x H x W 0/1 masks, class)."""

    def model_input(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes  # float32 already, normalised by the reader


class VolumeRegressor(Regressor):
    """The regressor's training on volumes: batches are (volumes, N x K float targets)."""

    def model_input(self, volumes: torch.Tensor) -> torch.Tensor:
        return volumes  # float32 already, normalised by the reader


@dataclass
class VolumeTrainResult:
    bundle: Path
    card: Card
    task: str  # classification, segmentation or regression
    validation: dict = field(default_factory=dict)  # classification: metrics.json; segmentation: the Dice
    # summary; regression: the RegressionEvaluation's summary
    evaluation: object = None  # the classification WrittenEvaluation, the VolumeMaskEvaluation or the
    # RegressionEvaluation


def check_volume_run(cfg: RunConfig) -> str:
    """Refuse settings a volume run cannot honour, before any data is read; returns the task.
    A segmentation run monitors ``val_jaccard`` (and says so)."""
    from lesionlens.models.registry import get_spec

    spec = get_spec(cfg.model.name)
    spec.require(3, f"training on volumes ({cfg.data.path})")
    task = "segmentation" if spec.output == "mask" else "classification"
    if cfg.train.task == "multitask":
        raise ConfigError("--task multitask is not supported on volumes yet; volumes train a classifier "
                          "(tiny_cnn3d, simple_cnn3d, resnet3d), a regressor (the same, --task regression) or a "
                          "mask model (unet3d, tiny_unet3d)")
    if cfg.train.task == "regression":
        if task == "segmentation":
            raise ConfigError(f"--task regression: {spec.name} is a mask model; choose a 3D classifier "
                              "(tiny_cnn3d, simple_cnn3d, resnet3d), whose outputs become the targets")
        if cfg.regression.box:
            raise ConfigError("regression.box is for 2D images (x0, y0, x1, y1)")
        if cfg.train.sampler != "shuffle":
            raise ConfigError("--task regression: the balanced sampler draws classes equally often; use shuffle")
        target_columns(cfg.data.target)
        task = "regression"
    elif cfg.data.target:
        raise ConfigError(f"data.target ({cfg.data.target}) names the numbers of --task regression")
    if cfg.train.task not in ("classification", task):
        raise ConfigError(f"--task {cfg.train.task}: {spec.name} is a {task} model; choose "
                          f"{'unet3d' if cfg.train.task == 'segmentation' else 'a 3D classifier'}")
    check_mixing(cfg.train, task)
    check_progressive(cfg.train, task, volumes=True)
    if cfg.model.pretrained:
        raise ConfigError(f"{spec.name} has no pretrained weights: train it from scratch (--no-pretrained)")
    if cfg.train.strategy not in VOLUME_STRATEGIES:
        raise ConfigError(f"volumes: {spec.name} trains whole; strategy must be one of {list(VOLUME_STRATEGIES)}, "
                          f"got {cfg.train.strategy!r}")
    if cfg.model.head != "linear" or cfg.model.frozen_stages or cfg.model.lesion_crop:
        raise ConfigError("volumes: model.head must be linear, with no frozen_stages and no lesion_crop")
    if cfg.train.devices * cfg.train.num_nodes > 1:
        raise ConfigError("volumes: training runs in one process (--devices 1)")
    if cfg.data.train_on_val:
        raise ConfigError("volumes: data.train_on_val is not supported; the validation volumes are held out")
    if task == "segmentation" and cfg.train.monitor not in ("val_jaccard", "val_loss"):
        log.info("segmentation: monitoring val_jaccard (the configuration's %s is a classification metric)",
                 cfg.train.monitor)
        cfg.train.monitor = "val_jaccard"
    if task == "regression" and cfg.train.monitor not in ("val_mae", "val_loss"):
        log.info("regression: monitoring val_mae (the configuration's %s is a classification metric)",
                 cfg.train.monitor)
        cfg.train.monitor = "val_mae"
    if task != "segmentation" and cfg.train.monitor == "val_jaccard":
        raise ConfigError("train.monitor val_jaccard needs a mask model (unet3d)")
    if task != "regression" and cfg.train.monitor == "val_mae":
        raise ConfigError("train.monitor val_mae needs --task regression")
    return task


def volume_preprocessing(cfg: RunConfig) -> VolumePreprocessing:
    """The run's volume preprocessing: the 3D model's own, with what ``cfg.volume`` sets."""
    from dataclasses import replace

    from lesionlens.models.registry import get_spec

    pre = get_spec(cfg.model.name).volume_preprocessing()
    v = cfg.volume
    return replace(pre, **{k: value for k, value in (("size", v.size), ("spacing", v.spacing),
                                                      ("normalisation", v.normalisation)) if value is not None})


def load_volume_data(cfg: RunConfig, pre: VolumePreprocessing, task: str, out: Path) -> VolumeData:
    """Read the table, preprocess every volume (and mask), leave test rows out and split."""
    from lesionlens.data.splits import assign_partitions

    if not cfg.data.path:
        raise ValueError("no training data: pass --data PATH (a CSV of NIfTI volumes)")
    columns = target_columns(cfg.data.target) if task == "regression" else ()
    table = read_volume_table(cfg.data.path, masks=task == "segmentation", group_column=cfg.data.group_column,
                              targets=columns)
    if table.has_partitions() and (table.frame["partition"] == "test").any():
        test = (table.frame["partition"] == "test").to_numpy()
        log.info("leaving the %d test volumes of %s out of training", test.sum(), cfg.data.path)
        table = table.subset(~test)
    if columns:
        store_targets(table, columns)
    data = prepare_volumes(table, pre, cfg.data.on_bad_input, report=out / "data_issues.csv")
    split = assign_partitions(data.table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.split_seed())
    return VolumeData(split, data.volumes, data.masks)


def train_volumes(cfg: RunConfig, out: str | Path, pre: VolumePreprocessing | None = None,
                  augment: VolumeAugment | None = None, progress: bool = True) -> VolumeTrainResult:
    """Train the 3D model ``cfg.model.name`` on the volumes of ``cfg.data.path`` at ``pre`` (default:
    :func:`volume_preprocessing`) with ``augment`` (default: :class:`VolumeAugment`, without flips and
    quarter turns when ``cfg.volume.flips_and_turns`` is off), keep the best epoch and write the
    bundle to ``out``."""
    import lightning as L
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader

    from lesionlens.bundle.card import WEIGHTS
    from lesionlens.data.dataset import balanced_sampler, class_weights
    from lesionlens.data.volume_dataset import Volumes
    from lesionlens.models.registry import create_model, get_spec
    from lesionlens.training.curves import epoch_table
    from lesionlens.training.distributed import World
    from lesionlens.training.loop import build_trainer, load_kept

    out = Path(out)
    if (out / "card.json").is_file() or (out / "checkpoints" / "last.ckpt").is_file():
        raise FileExistsError(f"{out} already holds a run; choose another --out")
    started = time.perf_counter()
    task = check_volume_run(cfg)
    spec = get_spec(cfg.model.name)
    pre = pre or volume_preprocessing(cfg)
    if augment is None:
        augment = VolumeAugment() if cfg.volume.flips_and_turns else VolumeAugment(flip=0.0, quarter_turn=0.0)
    spec.check_volume_size(pre.size)
    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    data = load_volume_data(cfg, pre, task, out)
    table = data.table
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"{cfg.data.path}: need both training and validation volumes, "
                         f"got {len(train_rows)} and {len(val_rows)}")
    classes = table.classes
    regression = None
    if task == "regression":  # the targets, standardised by their training mean and standard deviation
        from lesionlens.bundle.schema import RegressionInfo

        columns = list(target_columns(cfg.data.target))
        targets = stored_targets(table, columns)
        fitted = targets[train_rows]
        if (fitted.std(axis=0) == 0).any():
            raise ValueError(f"{cfg.data.path}: a target has one value on every training volume; nothing to learn")
        regression = RegressionInfo(columns, fitted.mean(axis=0).tolist(), fitted.std(axis=0).tolist(),
                                    np.median(fitted, axis=0).tolist(), cfg.regression.loss)
    else:
        targets = table.targets()
    outputs = {"segmentation": 1, "regression": len(regression.targets) if regression else 0}.get(task, len(classes))
    model = create_model(cfg.model.name, outputs, drop_rate=cfg.model.drop_rate)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("about to train %s (%s, %.2fM parameters) for %d epochs on %d volumes at %s voxels of %s mm, "
             "validating on %d", cfg.model.name, task, parameters / 1e6, cfg.train.epochs, len(train_rows),
             "x".join(map(str, pre.size)), "x".join(f"{s:g}" for s in pre.spacing) if pre.spacing else "any",
             len(val_rows))

    x_train, m_train = data.arrays(train_rows)
    x_val, m_val = data.arrays(val_rows)
    train_ds = Volumes(x_train, np.arange(len(train_rows)), targets[train_rows], m_train, augment, cfg.train.seed)
    val_ds = Volumes(x_val, np.arange(len(val_rows)), targets[val_rows], m_val)
    sampler = (balanced_sampler(targets[train_rows], cfg.train.seed)
               if cfg.train.sampler == "balanced" and task == "classification" else None)
    generator = torch.Generator().manual_seed(cfg.train.seed)
    batch = cfg.train.batch_size
    train_loader = DataLoader(train_ds, batch_size=batch, shuffle=sampler is None, sampler=sampler,
                              drop_last=len(train_ds) > batch, generator=generator,
                              num_workers=cfg.data.num_workers or 0)
    val_loader = DataLoader(val_ds, batch_size=2 * batch, shuffle=False)
    prior = None if regression else torch.tensor(
        np.bincount(targets[train_rows], minlength=len(classes)) / len(train_rows), dtype=torch.float32)
    if regression is not None:
        module = VolumeRegressor(model, cfg.train, cfg.regression, pre, len(train_loader),
                                 np.asarray(regression.mean), np.asarray(regression.std))
    elif task == "segmentation":
        module = VolumeSegmenter(model, cfg.train, cfg.segment, pre, len(train_loader), class_prior=prior)
    else:
        weights = class_weights(targets[train_rows], len(classes), cfg.train.class_weights)
        module = VolumeClassifier(model, cfg.train, pre, weights, len(train_loader), class_prior=prior)
    trainer, checkpoint = build_trainer(cfg, out, len(train_loader), False, progress, world=World(0, 1))
    fit_started = time.perf_counter()
    trainer.fit(module, train_loader, val_loader, weights_only=True)
    fit_seconds = time.perf_counter() - fit_started
    kept = load_kept(cfg, module, checkpoint, out / "checkpoints" / "last.ckpt", epoch_table(out / "logs"))
    model = module.model.cpu().eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))

    from lesionlens.training.volume_bundle import write_volume_bundle

    return write_volume_bundle(cfg, out, task, model, data, pre, train_rows, val_rows, trainer, kept,
                               fit_seconds, time.perf_counter() - started, regression)
