"""The typed sections of a bundle's card, and how they are built from its JSON.

Each section is a frozen dataclass whose fields are the JSON keys; :func:`build` checks that the
required ones are present and of their declared type, and names the field when one is not.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class BundleError(ValueError):
    """A bundle or card that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    num_classes: int
    head: str = "linear"
    drop_rate: float = 0.0
    pretrained: bool = False
    pretrained_source: str | None = None
    parameters: int | None = None
    trainable_parameters: int | None = None
    # strategy features: the shape of the fitted embedding classifier (lesionlens.models.classical)
    features_classifier: dict | None = None


@dataclass(frozen=True)
class TrainingInfo:
    config: dict  # the full RunConfig as a dict
    strategy: str
    monitor: str
    fit_time_s: float
    total_time_s: float
    device: str
    # epoch -> the blocks trainable from then on (stem, stage N, top; "last layer" for baseline)
    freeze_schedule: dict = field(default_factory=dict)
    epochs_run: int = 0
    best_epoch: int | None = None  # counted from 1; the last epoch with data.train_on_val
    best_score: float | None = None
    stopped_early: bool = False
    stopped_by_time: bool = False  # train.max_minutes ended training before the last epoch's last step
    train_images_per_s: float | None = None


@dataclass(frozen=True)
class DataInfo:
    path: str
    format: str
    fingerprint: str  # sha256 over every image's content hash, label and partition
    n_images: int
    counts: dict  # partition -> class -> images
    split_file: str = "split.csv"
    split_seed: int = 0
    issues: int = 0
    # The leakage check of the split (lesionlens.quality.leakage): leaks found, by evidence, and
    # whether --allow-leakage let training go on. None in bundles written before the check.
    leakage: dict | None = None


@dataclass(frozen=True)
class ValidationInfo:
    """The headline figures of the validation split (the full set is in ``evaluation/metrics.json``)."""

    n_images: int
    accuracy: float | None
    balanced_accuracy: float | None
    macro_auc: float | None
    macro_auc_grade: str | None = None
    per_class: dict = field(default_factory=dict)
    binary: dict = field(default_factory=dict)
    seen_in_training: bool = False  # data.train_on_val: not a held-out estimate

    @property
    def melanoma_auc(self) -> float | None:
        """The melanoma-vs-rest AUC, from the clinical view or (for a binary bundle) its class."""
        auc = self.binary.get("melanoma", {}).get("auc")
        return self.per_class.get("mel", {}).get("auc") if auc is None else auc


@dataclass(frozen=True)
class CalibrationInfo:
    """The temperature and how it was fitted (the figures are absent from a hand-set one)."""

    temperature: float
    method: str = "unknown"  # "temperature scaling" or "none"
    fitted_on: str | None = None
    n_images: int | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    brier_before: float | None = None
    brier_after: float | None = None
    bins: int = 15


@dataclass(frozen=True)
class OperatingPointInfo:
    """A clinical view's threshold, how it was chosen and what it gave on validation data."""

    threshold: float
    criterion: str = "unknown"  # sensitivity, specificity or youden
    target: float | None = None
    validation_sensitivity: float | None = None
    validation_specificity: float | None = None
    validation_positives: int | None = None
    validation_negatives: int | None = None
    # False when the threshold was chosen on images the model trained on (data.train_on_val, or
    # calibrated on training images): its sensitivity on new images is then unknown, and the card
    # keeps no validation figures for it (they would be optimistic).
    validated: bool = True


@dataclass(frozen=True)
class WeightsInfo:
    file: str
    sha256: str
    format: str = "safetensors"


@dataclass(frozen=True)
class CamInfo:
    file: str  # cam_head.npz: the linear classifier's weight, for NumPy class-activation maps
    sha256: str
    feature_shape: list
    gradcam_check: dict  # correlation of the NumPy CAMs with Grad-CAM in PyTorch


@dataclass(frozen=True)
class Int8Info:
    file: str
    sha256: str
    method: str
    calibration_images: str
    evaluated_on: str
    max_abs_prob_diff: float
    top1_agreement: float
    batch1_latency_ms: dict  # "fp32" / "int8" -> median ms
    speedup: float
    used_by_server: str
    accuracy: dict | None = None  # "fp32" / "int8" -> top-1 accuracy, where the images are labelled
    accuracy_change: float | None = None


@dataclass(frozen=True)
class SegmentationInfo:
    """A segmentation or multi-task bundle's mask head: how its masks are made and how good they
    were on the validation split (``validation``: the summary of ``lesionlens.evaluation.segmentation``)."""

    threshold: float  # a pixel is lesion where its probability exceeds this
    keep_largest: bool  # only the largest connected region is kept, its holes filled
    loss: str
    upsample: str  # the decoder's doubling: transposed or resize
    decoder_width: int
    validation: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RegressionInfo:
    """A regression bundle's outputs: the target columns in output order, the training mean and
    standard deviation that turn an output into the target's units (value = output x std + mean),
    the baseline's constant (the training median) and the validation summary
    (``lesionlens.evaluation.regression``)."""

    targets: list
    mean: list
    std: list
    baseline: list
    loss: str
    box: bool = False  # the four targets are a box's corners (x0, y0, x1, y1, fractions of the side)
    validation: dict = field(default_factory=dict)

    def values(self, outputs):
        """The network's outputs (N x K) in the targets' units."""
        import numpy as np

        return np.asarray(outputs, dtype=np.float64) * np.asarray(self.std) + np.asarray(self.mean)


@dataclass(frozen=True)
class OnnxInfo:
    file: str
    sha256: str
    opset: int
    input: dict
    outputs: list
    export_time_s: float
    check: dict  # the comparison with PyTorch that allowed the export
    cam: CamInfo | None = None
    int8: Int8Info | None = None


def build(cls: type, raw: Any, where: str):
    """``cls`` from a JSON object: required fields present, each of its declared type; unknown keys
    are left in the card's ``data``."""
    if not isinstance(raw, dict):
        raise BundleError(f"{where} must be an object, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise BundleError(f"{where}: missing {f.name!r}; the card is damaged or was not written by LesionLens")
            continue
        values[f.name] = checked(raw[f.name], hints[f.name], f"{where}.{f.name}")
    return cls(**values)


def checked(value: Any, hint: Any, where: str) -> Any:
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return None
        base = typing.get_origin(kind) or kind
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict, list) and isinstance(value, base):
            return value
        if dataclasses.is_dataclass(base):
            return value  # built by the caller
    raise BundleError(f"{where} must be {hint}, got {value!r}")
