"""Typed run configuration: dataclass defaults, overridden by a YAML file, overridden by flags.

The final configuration is written beside every run (``config.yaml``) and into the model card, so
a run can be repeated exactly. Nothing here is ever evaluated as code: YAML is read with
``yaml.safe_load`` and every value is checked against its field's type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


@dataclass
class DataConfig:
    path: str | None = None
    # auto | folder | csv | ham10000 | isic2018 | isic2017; "auto" looks at the path.
    format: Literal["auto", "folder", "csv", "ham10000", "isic2018", "isic2017"] = "auto"
    images: str | None = None  # where a CSV's images are, when not beside it
    # Which labels to learn: the data's own classes, malignant vs benign, or melanoma vs rest.
    labels: Literal["all", "malignant", "melanoma"] = "all"
    # 80/20 is the protocol of the course material and of the benchmark.
    val_fraction: float = 0.2
    test_fraction: float = 0.0
    group_column: str | None = None  # default: lesion_id or patient_id when the table has one
    on_bad_input: Literal["stop", "skip"] = "stop"  # stop: refuse bad input; skip: drop and report
    cache_dir: str | None = None  # default: $LESIONLENS_CACHE or ~/.cache/lesionlens
    # Data-loading worker processes; None: none on a CPU-only machine (a worker competes with the
    # model for the same cores: measured 82% of the bare-loop speed with one worker on 2 cores, 98%
    # with none), up to 8 beside a GPU.
    num_workers: int | None = None
    # Train on the validation images too (the ISIC challenges' protocol: fit on training +
    # validation, score the test set). The last epoch is kept, and the validation figures, the
    # temperature and the operating points are then measured on images the model has seen.
    train_on_val: bool = False


@dataclass
class AugmentConfig:
    """Random training-time changes; dermoscopic images have no canonical orientation."""

    hflip: float = 0.5  # probability
    vflip: float = 0.5  # probability
    rotation: float = 180.0  # degrees, uniform in [-rotation, rotation]
    translate: float = 0.05  # fraction of the side
    zoom: tuple[float, float] = (0.9, 1.15)  # <1 zooms out, >1 zooms in
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.1
    hue: float = 0.0  # hue jitter costs 4x the rest of the pipeline on a CPU; off by default


@dataclass
class ModelConfig:
    name: str = "efficientnet_lite0"
    pretrained: bool = True  # ImageNet weights; see lesionlens.models.weights for the sources
    weights: str | None = None  # a local weights file or folder (checked by sha256)
    image_size: int | None = None  # default: the pretrained weights' input size
    drop_rate: float = 0.2  # dropout before the classifier
    # The top model: "linear" keeps the architecture's own head with a new last layer; "avg" / "max"
    # put global average / max pooling + one dense layer on the feature map; "mlp" flattens it into
    # a 256-unit hidden layer. See lesionlens.models.heads.
    head: Literal["linear", "avg", "max", "mlp"] = "linear"
    # Test-time augmentation the bundle is meant to be used with: the end-of-training evaluation,
    # temperature and operating points are fitted with it, and evaluate / predict / report use it
    # unless --tta says otherwise (the server always predicts one view). flips: 4 views, d4: 8.
    tta: Literal["none", "flips", "d4"] = "none"
    # With strategy "full": freeze the stem and this many early stages (their batch-norm statistics
    # too): generic low-level filters stay as ImageNet made them, and training skips their costly
    # backward pass. The other strategies decide what is frozen themselves.
    frozen_stages: int = 0


@dataclass
class TrainConfig:
    # The transfer-learning protocol (lesionlens.training.strategies): full fine-tuning (the default
    # recipe), scratch, baseline (new last layer only), shallow (new top model), deep (then unfreeze
    # blocks from the output), features (embeddings + a scikit-learn classifier).
    strategy: Literal["full", "scratch", "baseline", "shallow", "deep", "features"] = "full"
    unfreeze_every: int = 1  # deep: epochs between unfreezing one more block
    # deep: each block further from the output learns this much slower; 0.5 over the 7 stages of
    # EfficientNet puts the stem at lr/128, which barely moves the generic ImageNet filters.
    lr_decay: float = 0.5
    features_classifier: Literal["logistic", "svm", "random_forest"] = "logistic"  # strategy features
    epochs: int = 10
    batch_size: int = 32
    optimizer: Literal[
        "sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta",
        "adam", "nadam", "amsgrad", "adamw",
    ] = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9  # for momentum, nesterov and rmsprop
    weight_decay: float = 1e-4  # L2 (decoupled for adamw)
    l1: float = 0.0  # L1 penalty on weights; l1 > 0 with weight_decay > 0 is the elastic net
    schedule: Literal["constant", "step", "exponential", "inverse_time", "cosine", "plateau"] = "cosine"
    warmup_epochs: float = 0.5  # linear warm-up; protects pretrained weights from the new head's first gradients
    step_epochs: float = 3.0  # step decay: multiply by gamma every step_epochs
    # step: factor per step (0.1); exponential: factor per epoch (0.8); inverse_time: the k in
    # lr / (1 + k * epoch) (0.5); plateau: factor on a plateau (0.1). None: those defaults.
    gamma: float | None = None
    min_lr_ratio: float = 0.01  # cosine floor, as a fraction of lr
    plateau_patience: int = 2
    label_smoothing: float = 0.0
    # Class imbalance (HAM10000 is 72% nv): weight the loss, resample the batches, or both.
    class_weights: Literal["none", "balanced", "sqrt"] = "sqrt"
    # Logit adjustment strength tau (0 = off, 1 = the paper's): trains the logits for a
    # class-balanced decision, the one balanced accuracy rewards, without re-weighting the loss.
    logit_adjustment: float = 0.0
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    monitor: Literal["val_balanced_accuracy", "val_macro_auc", "val_accuracy", "val_loss"] = (
        "val_balanced_accuracy"  # the ISIC challenge ranking metric
    )
    patience: int | None = None  # early stopping after this many epochs without improvement
    seed: int = 0
    max_minutes: float | None = None  # stop training after this wall time (checkpoints are kept)
    channels_last: bool = True  # 1.6x faster convolutions on a CPU


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))


class ConfigError(ValueError):
    """A configuration value or file that cannot be used; the message names the key."""


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Defaults, then the YAML file at ``path``, then ``overrides`` (dotted keys: ``train.lr``)."""
    cfg = RunConfig()
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the configuration: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (data, augment, model, train)")
        for section, values in raw.items():
            if not isinstance(values, dict):
                raise ConfigError(f"{path}: section {section!r} must be a mapping")
            for key, value in values.items():
                _set(cfg, f"{section}.{key}", value, origin=str(path))
    for dotted, value in (overrides or {}).items():
        _set(cfg, dotted, value, origin="command line")
    return cfg


def config_from_dict(raw: dict[str, Any]) -> RunConfig:
    """Rebuild a configuration saved by :meth:`RunConfig.to_dict` (for example in a model card)."""
    cfg = RunConfig()
    for section, values in raw.items():
        for key, value in values.items():
            _set(cfg, f"{section}.{key}", value, origin="saved configuration")
    return cfg


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"train.lr=3e-4"`` -> ``("train.lr", 0.0003)``; the value is read as YAML, never as code."""
    key, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def _set(cfg: RunConfig, dotted: str, value: Any, origin: str) -> None:
    section_name, _, key = dotted.partition(".")
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    if section_name not in sections or not key:
        raise ConfigError(f"{origin}: unknown setting {dotted!r}; sections are {sorted(sections)}")
    section = sections[section_name]
    hints = typing.get_type_hints(type(section))
    if key not in hints:
        raise ConfigError(
            f"{origin}: unknown setting {dotted!r}; {section_name} has {sorted(hints)}"
        )
    setattr(section, key, _coerce(value, hints[key], dotted, origin))


def _coerce(value: Any, hint: Any, dotted: str, origin: str) -> Any:
    """Check ``value`` against a field's type, converting only the lossless cases (int -> float)."""
    origin_type = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin_type in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, dotted, origin)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin_type is Literal:
        if value not in args:
            raise ConfigError(f"{origin}: {dotted} must be one of {list(args)}, got {value!r}")
        return value
    if origin_type is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{origin}: {dotted} must be a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, dotted, origin) for v, a in zip(value, args))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is bool and isinstance(value, bool):
        return value
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{origin}: {dotted} must be {getattr(hint, '__name__', hint)}, got {value!r}")


def _plain(obj: Any) -> Any:
    """Tuples become lists so the YAML stays plain (safe_load reads it back)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
