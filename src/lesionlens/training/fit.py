"""Train a classifier from a RunConfig and write its bundle.

    files -> table (checked, split) -> decoded cache -> what the run will do and cost (printed)
          -> Lightning fit (lesionlens.training.loop) or embeddings + scikit-learn (features)
          -> model.safetensors + split.csv + card.json + the evaluation of the validation split
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from safetensors.torch import save_file

from lesionlens.bundle.card import WEIGHTS, Card, write_card
from lesionlens.bundle.schema import DataInfo, ModelInfo, TrainingInfo, ValidationInfo
from lesionlens.bundle.split import SPLIT_FILE, fingerprint, split_counts, write_split
from lesionlens.config import ConfigError, RunConfig, load_config
from lesionlens.data.images import Preprocessing
from lesionlens.data.labels import apply_view
from lesionlens.data.load import PreparedData, prepare, read_table
from lesionlens.data.splits import assign_partitions
from lesionlens.evaluation.calibrate import fit_rule
from lesionlens.evaluation.evaluate import evaluate_model
from lesionlens.evaluation.files import WrittenEvaluation, write_evaluation
from lesionlens.models.freeze import set_trainable
from lesionlens.models.registry import create_model, get_spec
from lesionlens.quality.leakage import LeakageCheck, check_split, enforce
from lesionlens.training.curves import plot_learning_curves
from lesionlens.training import allocator
from lesionlens.training.distributed import World, check_distributed, device_description, world_of
from lesionlens.training.estimate import Estimate, estimate
from lesionlens.training.features import fit_embedding_classifier
from lesionlens.training.loop import fit_network
from lesionlens.training.mixing import describe_mixing
from lesionlens.training.progressive import check_progressive_size, describe_progressive
from lesionlens.training.strategies import check_strategy, plan_strategy
from lesionlens.training.tasks import check_task

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    bundle: Path
    card: Card
    evaluation: WrittenEvaluation | None  # the validation split, under the fitted decision rule (no class head: None)
    estimate: Estimate | None = None  # what the run was expected to cost (None for a resumed run)
    segmentation: Any = None  # segmentation and multitask: the validation split's SegmentationEvaluation
    regression: Any = None  # regression: the validation split's RegressionEvaluation

    @property
    def validation(self) -> dict:
        """The validation split's metrics.json."""
        return self.evaluation.metrics


def resolve_preprocessing(cfg: RunConfig, out: Path | None = None, resume: bool = False,
                          world: World = World(0, 1)) -> Preprocessing:
    """The run's preprocessing: the weights' own, at the configured size; with ``model.lesion_crop``
    the segmenter is copied into the bundle ``out`` first (kept as it is when resuming; processes
    other than 0 of a multi-process run use process 0's copy)."""
    spec = get_spec(cfg.model.name)
    pre = spec.preprocessing_for(cfg.model.pretrained)
    pre = pre.resized(cfg.model.image_size) if cfg.model.image_size else pre
    spec.check_input_size(pre.image_size)
    if cfg.model.lesion_crop:
        from lesionlens.data.crop import bundle_segmenter

        if out is None:
            raise ValueError("model.lesion_crop: the segmenter is copied into the bundle; no bundle folder was given")
        from filelock import FileLock

        Path(out).mkdir(parents=True, exist_ok=True)
        with FileLock(Path(out) / ".segmenter.lock"):
            crop = bundle_segmenter(cfg.model.lesion_crop, out, cfg.model.crop_margin,
                                    reuse=resume or not world.is_zero)
        pre = replace(pre, lesion_crop=crop)
    return pre


def load_training_data(cfg: RunConfig, pre: Preprocessing, out: Path, progress: bool = True,
                       world: World = World(0, 1)) -> tuple[PreparedData, LeakageCheck]:
    """Read, relabel, decode (cached) and split the training data (test rows are left out), and
    check the split for leakage: refused unless ``cfg.data.allow_leakage``. Process 0 writes the
    bad-input report."""
    if not cfg.data.path:
        raise ValueError("no training data: pass --data PATH (a folder, a CSV or an official layout)")
    table = read_table(cfg.data.path, cfg.data.format, cfg.data.images, cfg.data.group_column)
    table = apply_view(table, cfg.data.labels)
    if table.has_partitions() and (table.frame["partition"] == "test").any():
        test = (table.frame["partition"] == "test").to_numpy()
        log.info("leaving the %d test images of %s out of training", test.sum(), cfg.data.path)
        table = table.subset(~test)
    data = prepare(table, pre, cfg.data.on_bad_input, cfg.data.cache_dir,
                   report=out / "data_issues.csv" if world.is_zero else None, progress=progress and world.is_zero)
    split = assign_partitions(data.table, cfg.data.val_fraction, cfg.data.test_fraction, cfg.split_seed())
    leakage = check_split(split, data.images.array)
    enforce(leakage, cfg.data.allow_leakage, f"{cfg.data.path}: the training split")
    return PreparedData(split, data.images), leakage


def split_rows(cfg: RunConfig, data: PreparedData, out: Path,
               world: World = World(0, 1)) -> tuple[np.ndarray, np.ndarray]:
    """Write the split file (process 0); the rows to train on and those to validate on (with
    ``data.train_on_val`` the validation rows are trained on too)."""
    if world.is_zero:
        write_split(data.table, out / SPLIT_FILE)
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(val_rows) == 0 or len(train_rows) == 0:
        raise ValueError(f"{cfg.data.path}: need both training and validation images, "
                         f"got {len(train_rows)} and {len(val_rows)}")
    check_distributed(cfg, world, len(train_rows), len(val_rows))
    if cfg.data.train_on_val and world.is_zero:
        log.warning("data.train_on_val: training on the %d validation images too; the last epoch is kept and "
                    "the validation figures are not a held-out estimate", len(val_rows))
        train_rows = np.concatenate([train_rows, val_rows])
    return train_rows, val_rows


def describe_plan(cfg: RunConfig, pre: Preprocessing, n_train: int, n_val: int) -> str:
    """What the run is about to do, in one sentence."""
    t = cfg.train
    if t.strategy == "features":
        how = f"fit a {t.features_classifier} classifier on frozen {cfg.model.name} embeddings"
    else:
        how = (f"train {cfg.model.name} (strategy {t.strategy}, head {cfg.model.head}) for {t.epochs} "
               f"epoch{'s' if t.epochs != 1 else ''}, "
               f"batch {t.batch_size}, {t.optimizer} at lr {t.lr:g} with a {t.schedule} schedule"
               f"{describe_mixing(t)}{describe_progressive(t, pre.image_size)}")
    seen = " (also trained on)" if cfg.data.train_on_val else ""
    return f"about to {how} at {pre.image_size} px on {n_train:,} images, validating on {n_val:,}{seen}"


def trained(out: Path, cfg: RunConfig | None = None, progress: bool = True) -> Path:
    """The bundle in ``out``, made once: read back when finished, resumed from its last checkpoint
    when interrupted, else trained with ``cfg`` (benchmarks that resume step by step use this)."""
    out = Path(out)
    if (out / "card.json").is_file():
        return out
    if (out / "checkpoints" / "last.ckpt").is_file():
        train(load_config(out / "config.yaml"), out, resume=True, progress=progress)
    elif cfg is None:
        raise FileNotFoundError(f"{out}: no finished or interrupted run, and no configuration to train one")
    else:
        train(cfg, out, progress=progress)
    return out


def train(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True) -> TrainResult | None:
    """Train, keep the best epoch by ``cfg.train.monitor`` (the last with ``data.train_on_val``:
    ``curves.kept_epoch``) and write the bundle to ``out``. In a
    multi-process run (``train.devices`` x ``train.num_nodes`` > 1) every process calls it; process 0
    writes the bundle and gets the result, the others get None."""
    out = Path(out)
    allocator.prepare()  # LESIONLENS_ALLOCATOR=glibc: glibc told to keep freed memory
    if _is_volume_run(cfg):  # NIfTI volumes: a 3D model, its own loop (lesionlens.training.volume_fit)
        from lesionlens.training.volume_fit import train_volumes

        if resume:
            raise ValueError("volume runs cannot be resumed yet; start a new run")
        return train_volumes(cfg, out, progress=progress)
    last_ckpt = out / "checkpoints" / "last.ckpt"
    if resume:
        if not last_ckpt.is_file():
            raise FileNotFoundError(f"{last_ckpt}: nothing to resume (no checkpoint from an earlier run)")
        cfg = load_config(out / "config.yaml")
        log.info("resuming %s from %s", out, last_ckpt)
    world = world_of(cfg)
    if not world.is_zero:
        logging.getLogger("lesionlens").setLevel(logging.WARNING)  # process 0 tells the story
    elif not resume and (last_ckpt.is_file() or (out / "card.json").is_file()):  # a features run has no checkpoint
        raise FileExistsError(f"{out} already holds a run; use --resume to continue it or another --out")
    check_task(cfg)  # before any data is read: a combination that cannot run fails at once
    check_strategy(cfg)
    check_distributed(cfg, world)
    if cfg.data.train_on_val and cfg.train.patience is not None:
        raise ConfigError("data.train_on_val keeps the last epoch: it cannot be combined with early stopping "
                          "(train.patience)")
    if cfg.train.task == "regression":
        from lesionlens.training.regress_fit import train_regression

        return train_regression(cfg, out, resume, progress, world)
    if cfg.train.task != "classification":
        from lesionlens.training.segment_fit import train_segmentation

        return train_segmentation(cfg, out, resume, progress, world)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if world.is_zero:
        cfg.save(out / "config.yaml")
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)

    pre = resolve_preprocessing(cfg, out, resume, world)
    check_progressive_size(cfg.train, pre.image_size)
    data, leakage = load_training_data(cfg, pre, out, progress, world)
    table = data.table
    train_rows, val_rows = split_rows(cfg, data, out, world)
    targets = table.targets()
    classes = table.classes
    log.info("classes %s; train %d, validation %d images", classes, len(train_rows), len(val_rows))

    log.info("%s", describe_plan(cfg, pre, len(train_rows), len(val_rows)))
    expected = None if resume or not world.is_zero else estimate(cfg, len(train_rows), pre.image_size)
    if expected is not None:
        log.info("expected training time: %s", expected.describe())
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
        fitted_network = fit_network(cfg, out, model, plan, pre, data, targets, train_rows, val_rows, resume,
                                     progress, world)
        if fitted_network is None:  # another process than 0 of a multi-process run: process 0 writes the bundle
            return None
        model, run = fitted_network
        fit_seconds = time.perf_counter() - fit_started
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS))

    seen = ", also trained on" if cfg.data.train_on_val else ""
    seen += f", TTA {cfg.model.tta}" if cfg.model.tta != "none" else ""
    description = f"{cfg.model.name} on {Path(cfg.data.path).name} (validation split, {len(val_rows)} images{seen})"
    ev = evaluate_model(model, classes, pre, data, val_rows, description, tta=cfg.model.tta)
    # temperature and the 0.866-sensitivity operating points, on validation (unvalidated where the
    # run also trained on it: there is nothing held out to choose them on)
    ev, rule = fit_rule(ev, held_out=not cfg.data.train_on_val)
    written = write_evaluation(ev, out / "evaluation")
    files = {"split": SPLIT_FILE}
    if fitted is None:
        plot_learning_curves(out / "logs", out / "learning_curves.png", cfg.train.monitor,
                             title=f"{cfg.model.name}, {pre.image_size}px, {cfg.train.optimizer} + {cfg.train.schedule}",
                             val_trained_on=cfg.data.train_on_val)
        files["learning_curves"] = "learning_curves.png"
    m = written.metrics
    card = write_card(
        out,
        model=ModelInfo(cfg.model.name, len(classes), cfg.model.head, cfg.model.drop_rate, cfg.model.pretrained,
                        model.pretrained_source, sum(p.numel() for p in model.parameters()), trainable, fitted),
        classes=classes, label_view=cfg.data.labels, preprocessing=pre, tta=cfg.model.tta,
        training=TrainingInfo(
            config=cfg.to_dict(), strategy=cfg.train.strategy, monitor=cfg.train.monitor,
            fit_time_s=round(fit_seconds, 1), total_time_s=round(time.perf_counter() - started, 1),
            device=device_description(),
            freeze_schedule=plan.schedule(cfg.train.epochs if fitted is None else 1), **run),
        dataset=DataInfo(str(cfg.data.path), table.format, fingerprint(table), len(table), split_counts(table),
                         SPLIT_FILE, cfg.split_seed(), len(table.issues), leakage.record(cfg.data.allow_leakage)),
        validation=ValidationInfo(m["n_images"], m["accuracy"], m["balanced_accuracy"], m["macro_auc"],
                                  m["macro_auc_grade"], m["per_class"], m["binary"], cfg.data.train_on_val),
        calibration=rule.calibration, operating_points=rule.operating_points,
        files={name: str(p.relative_to(out)) for name, p in written.files.items()} | files,
    )
    return TrainResult(out, card, written, expected)


def _is_volume_run(cfg: RunConfig) -> bool:
    """A run on volumes: a 3D model, or a CSV of NIfTI files (a 2D model is then refused by name)."""
    from lesionlens.data.volume_load import is_volume_table

    return get_spec(cfg.model.name).dims == 3 or bool(cfg.data.path and is_volume_table(cfg.data.path))
