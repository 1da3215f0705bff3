"""The model bundle: the folder training writes and every later command reads.

    model.safetensors   the weights (never pickle)
    card.json           architecture, classes, preprocessing, training configuration, data
                        fingerprint and split, validation metrics, library versions, creation time,
                        and the sha256 of model.safetensors
    config.yaml         the full run configuration (``lesionlens train --config`` reads it back)
    split.csv           every image with its partition, label and content hash
    evaluation/         metrics.json, ROC and confusion-matrix plots of the validation split
    learning_curves.png, logs/metrics.csv, checkpoints/ (for --resume)

This module is torch-free, so the server can read a card without PyTorch.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from lesionlens.data.images import Preprocessing
from lesionlens.digest import file_digest

CARD = "card.json"
WEIGHTS = "model.safetensors"
BUNDLE_FORMAT = "lesionlens-bundle/1"

_VERSIONED = ("lesionlens", "torch", "torchvision", "timm", "lightning", "numpy", "pillow",
              "scikit-learn", "safetensors", "pandas")


class BundleError(ValueError):
    pass


@dataclass(frozen=True)
class Card:
    path: Path  # the bundle folder
    data: dict

    @property
    def architecture(self) -> str:
        return self.data["model"]["architecture"]

    @property
    def classes(self) -> list[str]:
        return list(self.data["classes"])

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_dict(self.data["preprocessing"])

    @property
    def tta(self) -> str:
        """The test-time augmentation the bundle's rule was fitted with and is used with by default."""
        return self.data.get("inference", {}).get("tta", "none")

    def resolve_tta(self, tta: str | None) -> str:
        """``tta`` as asked for, or the bundle's own where it is None."""
        return self.tta if tta is None else tta

    @property
    def weights_path(self) -> Path:
        return self.path / self.data["weights"]["file"]


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_card(folder: Path, card: dict) -> Path:
    """Complete ``card`` with the format, time, versions and weights hash, and write it."""
    weights = folder / WEIGHTS
    full = {
        "format": BUNDLE_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **card,
        "weights": {"file": WEIGHTS, "format": "safetensors", "sha256": file_digest(weights)},
        "versions": library_versions(),
    }
    path = folder / CARD
    path.write_text(json.dumps(full, indent=2, default=_jsonable))
    return path


def read_card(folder: str | Path, verify: bool = True) -> Card:
    """Read a bundle's card; with ``verify`` the weights file must match the sha256 it records."""
    folder = Path(folder).expanduser()
    path = folder / CARD
    if not path.is_file():
        hint = " (did training finish? `lesionlens train --resume` continues it)" if (folder / "checkpoints").is_dir() else ""
        raise BundleError(f"{folder}: not a LesionLens bundle: no {CARD}{hint}")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: unreadable card: {e}") from e
    if data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: unknown bundle format {data.get('format')!r}; expected {BUNDLE_FORMAT}")
    card = Card(folder, data)
    if verify:
        weights = card.weights_path
        if not weights.is_file():
            raise BundleError(f"{weights}: the bundle's weights file is missing")
        digest = file_digest(weights)
        if digest != data["weights"]["sha256"]:
            raise BundleError(f"{weights}: sha256 {digest} does not match the card ({data['weights']['sha256']});"
                              " the weights were changed or damaged")
    return card


def _jsonable(obj):
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot write {type(obj).__name__} to the card")
