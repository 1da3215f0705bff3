"""The bundle's card (``card.json``): one typed schema, one reader, one writer.

A card says what a bundle is: architecture, classes, preprocessing, the training run (its full
configuration, strategy, timing), the data it was trained on (fingerprint, split counts), the
validation figures, the decision rule fitted on them (temperature, operating points), the sha256 of
the weights and the library versions of the training environment. ``lesionlens calibrate`` and
``lesionlens export`` later replace or add a section through :func:`update_card`, which keeps the
rest and logs the change (who, when, with which library versions) in ``updates``.

Every field read outside training has a typed accessor here; the JSON keeps its plain layout, so
other tools can read it too. Torch-free: the server reads cards.

Schema versions (``format``):
- ``lesionlens-bundle/1``: as 2 without ``updates``; ``calibrate`` replaced ``versions`` with its own
  environment's. Still read.
- ``lesionlens-bundle/2``: adds ``updates``; ``versions`` is always the training environment's.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lesionlens.bundle.schema import (
    BundleError,
    CalibrationInfo,
    CamInfo,
    DataInfo,
    Int8Info,
    ModelInfo,
    OnnxInfo,
    OperatingPointInfo,
    RegressionInfo,
    SegmentationInfo,
    TrainingInfo,
    ValidationInfo,
    WeightsInfo,
    build,
)
from lesionlens.bundle.split import SplitRow, read_split
from lesionlens.data.images import Preprocessing
from lesionlens.data.volumes import VolumePreprocessing
from lesionlens.decision import DecisionRule, OperatingPoint
from lesionlens.digest import file_digest

CARD = "card.json"
WEIGHTS = "model.safetensors"
SCHEMA_VERSION = 2
BUNDLE_FORMAT = f"lesionlens-bundle/{SCHEMA_VERSION}"
_FORMAT_PREFIX = "lesionlens-bundle/"
# Sections a later command may replace (the training record never changes after training).
UPDATABLE = ("calibration", "operating_points", "inference", "onnx")

_VERSIONED = ("lesionlens", "torch", "torchvision", "timm", "lightning", "numpy", "pillow",
              "scikit-learn", "safetensors", "pandas", "onnx", "onnxruntime")


@dataclass(frozen=True)
class Card:
    """A bundle's card, read and checked. ``data`` is the JSON as stored (after upgrading an older
    format), for tools that show it whole (``GET /v1/model``)."""

    path: Path  # the bundle folder
    data: dict
    format: str
    created: str
    model: ModelInfo
    classes: list[str]
    label_view: str
    preprocessing: Preprocessing | VolumePreprocessing  # a volume bundle's: grid, spacing, normalisation
    tta: str  # the test-time augmentation the rule was fitted with and is used with by default
    training: TrainingInfo
    dataset: DataInfo
    validation: ValidationInfo
    calibration: CalibrationInfo | None
    operating_points: dict[str, OperatingPointInfo]
    files: dict[str, str]
    weights: WeightsInfo
    versions: dict[str, str]  # the training environment's
    onnx: OnnxInfo | None
    updates: list[dict]  # later changes: {"by", "time", "sections", "versions"}
    task: str = "classification"  # or segmentation, multitask, regression (lesionlens.config.Task)
    segmentation: SegmentationInfo | None = None  # the mask head, for segmentation and multitask
    regression: RegressionInfo | None = None  # the targets and their scale, for regression

    @property
    def architecture(self) -> str:
        return self.model.architecture

    @property
    def is_volume(self) -> bool:
        """A bundle for NIfTI volumes (a 3D model), not for 2D images."""
        return isinstance(self.preprocessing, VolumePreprocessing)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def version(self) -> str:
        """Names this exact model: creation time and the weights' digest."""
        return f"{self.created} sha256:{self.weights.sha256[:12]}"

    @property
    def weights_path(self) -> Path:
        return self.path / self.weights.file

    @property
    def rule(self) -> DecisionRule:
        """The decision rule: temperature and operating points (plain softmax and argmax without)."""
        temperature = self.calibration.temperature if self.calibration else 1.0
        points = tuple(OperatingPoint(view, p.threshold, p.criterion, p.target, p.validated)
                       for view, p in self.operating_points.items())
        return DecisionRule(tuple(self.classes), temperature, points)

    @property
    def trained_partitions(self) -> tuple[str, ...]:
        """The partitions of ``split.csv`` whose images the model trained on: ``train``, and ``val``
        too where the run had ``data.train_on_val`` (then nothing in the split is held out)."""
        return ("train", "val") if self.validation.seen_in_training else ("train",)

    @property
    def kept_epoch(self) -> str:
        """Which epoch's weights the bundle holds, in words: the best by the monitored score, or the
        last where the validation images were trained on too (no epoch is chosen on them)."""
        t = self.training
        if t.best_epoch is None:
            return f"no epoch chosen (strategy {t.strategy})" if t.strategy == "features" else "no epoch recorded"
        if self.validation.seen_in_training:
            return f"last epoch kept ({t.best_epoch}); the validation images were trained on too"
        return f"best epoch {t.best_epoch} by {t.monitor}"

    def training_rows(self) -> list[SplitRow]:
        """The ``split.csv`` rows of the images the model trained on (``trained_partitions``);
        empty for a bundle without a split file."""
        split = self.file("split")
        return [r for r in read_split(split) if r.partition in self.trained_partitions] if split else []

    def resolve_tta(self, tta: str | None) -> str:
        """``tta`` as asked for, or the bundle's own where it is None."""
        return self.tta if tta is None else tta

    def file(self, name: str) -> Path | None:
        """A file the card lists under ``files`` (``split``, ``learning_curves``, figures), if present."""
        relative = self.files.get(name)
        return self.path / relative if relative and (self.path / relative).is_file() else None


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_card(folder: Path, *, model: ModelInfo, classes: list[str], label_view: str,
               preprocessing: Preprocessing | VolumePreprocessing,
               tta: str, training: TrainingInfo, dataset: DataInfo, validation: ValidationInfo,
               calibration: CalibrationInfo | None, operating_points: dict[str, OperatingPointInfo],
               files: dict[str, str], task: str = "classification",
               segmentation: SegmentationInfo | None = None, regression: RegressionInfo | None = None) -> Card:
    """Write a new bundle's card: the sections given, the format, time, training environment and
    the sha256 of the weights already saved in ``folder``."""
    folder = Path(folder)
    full = {
        "format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": task,
        "model": model,
        "classes": list(classes),
        "label_view": label_view,
        "preprocessing": _relative(preprocessing, folder).to_dict(),
        "inference": {"tta": tta},
        "training": training,
        "data": dataset,
        **({"calibration": calibration} if calibration is not None else {}),
        "operating_points": operating_points,
        "validation": validation,
        **({"segmentation": segmentation} if segmentation is not None else {}),
        **({"regression": regression} if regression is not None else {}),
        "files": files,
        "weights": WeightsInfo(WEIGHTS, file_digest(folder / WEIGHTS)),
        "versions": library_versions(),
        "updates": [],
    }
    _write(folder / CARD, full)
    return read_card(folder)


def update_card(folder: str | Path, sections: dict[str, Any], by: str) -> Card:
    """Replace (or add) the named sections of a bundle's card and keep everything else; the change
    is logged in ``updates`` with this environment's library versions. Only the sections in
    ``UPDATABLE`` may change: the training record, the weights' digest and ``versions`` never do."""
    card = read_card(folder)
    refused = sorted(set(sections) - set(UPDATABLE))
    if refused:
        raise BundleError(f"{card.path / CARD}: sections {refused} are written once, by training; "
                          f"later commands may change {list(UPDATABLE)}")
    data = {**card.data, "format": BUNDLE_FORMAT}
    for name, value in sections.items():
        data[name] = value
    data["updates"] = [*card.updates, {"by": by, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                       "sections": sorted(sections), "versions": library_versions()}]
    _write(card.path / CARD, data)
    return read_card(card.path)


def read_card(folder: str | Path, verify: bool = True) -> Card:
    """Read and check a bundle's card; with ``verify`` the weights file must match the sha256 it records."""
    folder = Path(folder).expanduser()
    path = folder / CARD
    if not path.is_file():
        hint = " (did training finish? `lesionlens train --resume` continues it)" if (folder / "checkpoints").is_dir() else ""
        raise BundleError(f"{folder}: not a LesionLens bundle: no {CARD}{hint}")
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable card: {e}") from e
    if not isinstance(raw, dict):
        raise BundleError(f"{path}: not a LesionLens card (expected a JSON object)")
    card = _parse(folder, _upgrade(raw, path), path)
    if verify:
        weights = card.weights_path
        if not weights.is_file():
            raise BundleError(f"{weights}: the bundle's weights file is missing")
        digest = file_digest(weights)
        if digest != card.weights.sha256:
            raise BundleError(f"{weights}: sha256 {digest} does not match the card ({card.weights.sha256});"
                              " the weights were changed or damaged")
    return card


def _upgrade(raw: dict, path: Path) -> dict:
    """The card in the current schema; an unknown or newer format is refused with what to do."""
    fmt = raw.get("format")
    version = fmt[len(_FORMAT_PREFIX):] if isinstance(fmt, str) and fmt.startswith(_FORMAT_PREFIX) else None
    if version is None or not version.isdigit():
        raise BundleError(f"{path}: unknown bundle format {fmt!r}; expected {BUNDLE_FORMAT} (a card written by "
                          "`lesionlens train`)")
    if int(version) > SCHEMA_VERSION:
        raise BundleError(f"{path}: bundle format {fmt} is newer than this LesionLens reads ({BUNDLE_FORMAT}); "
                          "upgrade LesionLens to use this bundle")
    if int(version) == 1:  # format 1 had no log of later changes
        raw = {**raw, "updates": []}
    return raw


def _parse(folder: Path, raw: dict, path: Path) -> Card:
    where = str(path)
    try:
        return Card(
            path=folder,
            data=raw,
            format=_get(raw, "format", str, where),
            created=_get(raw, "created", str, where),
            model=_section(ModelInfo, raw, "model", where),
            classes=_get(raw, "classes", list, where),
            label_view=raw.get("label_view", "all"),
            preprocessing=_preprocessing(_get(raw, "preprocessing", dict, where), folder),
            tta=raw.get("inference", {}).get("tta", "none"),
            training=_section(TrainingInfo, raw, "training", where),
            dataset=_section(DataInfo, raw, "data", where),
            validation=_section(ValidationInfo, raw, "validation", where),
            calibration=_section(CalibrationInfo, raw, "calibration", where) if "calibration" in raw else None,
            operating_points={view: build(OperatingPointInfo, p, f"{where}: operating_points.{view}")
                              for view, p in raw.get("operating_points", {}).items()},
            files=raw.get("files", {}),
            weights=_section(WeightsInfo, raw, "weights", where),
            versions=raw.get("versions", {}),
            onnx=_onnx(raw["onnx"], where) if raw.get("onnx") else None,
            updates=raw.get("updates", []),
            task=raw.get("task", "classification"),
            segmentation=_section(SegmentationInfo, raw, "segmentation", where) if "segmentation" in raw else None,
            regression=_section(RegressionInfo, raw, "regression", where) if "regression" in raw else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, BundleError):
            raise
        raise BundleError(f"{where}: damaged card: {e}") from e


def _onnx(raw: dict, where: str) -> OnnxInfo:
    cam = build(CamInfo, raw["cam"], f"{where}: onnx.cam") if raw.get("cam") else None
    int8 = build(Int8Info, raw["int8"], f"{where}: onnx.int8") if raw.get("int8") else None
    return dataclasses.replace(build(OnnxInfo, {**raw, "cam": None, "int8": None}, f"{where}: onnx"),
                               cam=cam, int8=int8)


def _preprocessing(raw: dict, folder: Path) -> Preprocessing | VolumePreprocessing:
    """The card's preprocessing (a volume bundle's says ``"kind": "volume"``); a crop-then-classify
    segmenter's path is taken from the bundle."""
    if raw.get("kind") == "volume":
        return VolumePreprocessing.from_dict(raw)
    pre = Preprocessing.from_dict(raw)
    return pre if pre.lesion_crop is None else dataclasses.replace(pre, lesion_crop=pre.lesion_crop.resolved(folder))


def _relative(pre: Preprocessing | VolumePreprocessing, folder: Path) -> Preprocessing | VolumePreprocessing:
    """As written into a card: a segmenter inside the bundle is named relative to it (the bundle moves whole)."""
    return pre if isinstance(pre, VolumePreprocessing) or pre.lesion_crop is None else dataclasses.replace(pre, lesion_crop=pre.lesion_crop.relative_to(folder))


def _get(raw: dict, key: str, kind: type, where: str):
    if key not in raw:
        raise BundleError(f"{where}: the card has no {key!r}; it is damaged or was not written by LesionLens")
    if not isinstance(raw[key], kind):
        raise BundleError(f"{where}: {key!r} must be {kind.__name__}, got {type(raw[key]).__name__}")
    return raw[key]


def _section(cls: type, raw: dict, key: str, where: str):
    return build(cls, _get(raw, key, dict, where), f"{where}: {key}")


def _write(path: Path, card: dict) -> None:
    """Write atomically: a reader never sees half a card."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(card, indent=2, default=_jsonable))
    os.replace(tmp, path)


def _jsonable(obj):
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to the card")
