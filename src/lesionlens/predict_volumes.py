"""Predict NIfTI volumes with a volume bundle: class probabilities, or masks with the object's volume.

The bundle's card carries the :class:`~lesionlens.data.volumes.VolumePreprocessing` it was trained
with (grid, spacing, normalisation), so a file is prepared exactly as in training, never re-declared
here. Masks come back on the network's grid (the bundle's spacing and size, in the canonical RAS+
orientation, centred on the volume's centre), not on the file's own grid; their volume in mm^3 is
the number of mask voxels times the grid's voxel volume. ``lesionlens predict`` calls
:func:`predict_volume_paths` for a volume bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.schema import BundleError
from lesionlens.data.volumes import VolumeError, is_volume_path, preprocess_volume


def load_volume_model(card: Card) -> torch.nn.Module:
    """The bundle's 3D network with its trained weights, in evaluation mode."""
    from safetensors.torch import load_file

    from lesionlens.models.registry import create_model, get_spec

    if not card.is_volume:
        raise BundleError(f"{card.path}: a bundle for 2D images ({card.architecture}); volumes need a bundle "
                          "trained on NIfTI volumes")
    get_spec(card.architecture).require(3, f"the volume bundle {card.path}")
    model = create_model(card.architecture, card.model.num_classes, drop_rate=card.model.drop_rate)
    model.load_state_dict(load_file(str(card.weights_path)))
    return model.eval()


def predict_volume_logits(model: torch.nn.Module, volumes: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """The network's outputs for N x D x H x W preprocessed volumes (class logits N x C, or mask
    logits N x K x D x H x W), in evaluation mode, batch by batch."""
    model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(volumes), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(volumes[start:start + batch_size], dtype=np.float32))[:, None]
            outputs.append(model(x).float().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


@dataclass
class VolumePredictions:
    paths: list[str]
    classes: list[str]
    probabilities: np.ndarray | None = None  # N x C (classification bundles)
    values: np.ndarray | None = None  # N x K in the targets' units (regression bundles; classes are the targets)
    masks: np.ndarray | None = None  # N x D x H x W bool, on the bundle's grid (segmentation bundles)
    voxel_mm3: float | None = None  # the grid's voxel volume (None where the bundle resizes instead)

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.probabilities.argmax(1)]

    @property
    def volumes_mm3(self) -> np.ndarray | None:
        if self.masks is None or self.voxel_mm3 is None:
            return None
        return self.masks.reshape(len(self.masks), -1).sum(1) * self.voxel_mm3


class VolumePredictor:
    """A volume bundle loaded once; :meth:`predict` reads, prepares and predicts files."""

    def __init__(self, bundle: str | Path):
        self.card = read_card(bundle)
        self.model = load_volume_model(self.card)
        self.pre = self.card.preprocessing
        self.segments = self.card.task == "segmentation"

    def prepare(self, paths: list[str | Path]) -> np.ndarray:
        """N x D x H x W float32 on the bundle's grid; a bad file raises VolumeError naming it."""
        return np.stack([preprocess_volume(p, self.pre) for p in paths])

    def predict(self, paths: list[str | Path], batch_size: int = 8) -> VolumePredictions:
        volumes = self.prepare(paths)
        out = predict_volume_logits(self.model, volumes, batch_size)
        names = [str(p) for p in paths]
        if self.segments:
            threshold = self.card.segmentation.threshold if self.card.segmentation else 0.5
            masks = 1 / (1 + np.exp(-out[:, 0])) > threshold
            voxel = float(np.prod(self.pre.spacing)) if self.pre.spacing else None
            return VolumePredictions(names, list(self.card.classes), masks=masks, voxel_mm3=voxel)
        if self.card.regression is not None:
            return VolumePredictions(names, list(self.card.regression.targets), values=self.card.regression.values(out))
        return VolumePredictions(names, list(self.card.classes), probabilities=self.card.rule.probabilities(out))


def collect_volumes(inputs: list[str | Path]) -> list[tuple[Path, str | None]]:
    """NIfTI files named in ``inputs`` or found in its folders (recursively, sorted); a name that is
    neither comes back with the reason."""
    found: list[tuple[Path, str | None]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += [(f, None) for f in sorted(item.rglob("*")) if f.is_file() and is_volume_path(f)]
        elif item.is_file():
            found.append((item, None if is_volume_path(item) else "not a NIfTI file (.nii or .nii.gz)"))
        else:
            found.append((item, "no such file or folder"))
    return found


def predict_volume_paths(bundle: str | Path, inputs: list[str | Path], masks: str | Path | None = None) -> list[dict]:
    """One row per volume: ``path, predicted, confidence, p_<class>...`` for a classification bundle;
    ``path, <target>...`` for a regression bundle;
    ``path, volume_mm3, voxels, mask`` for a segmentation bundle, whose masks are written as NIfTI
    files on the bundle's grid into ``masks``. A file that cannot be used gets its ``error``."""
    import nibabel as nib

    predictor = VolumePredictor(bundle)
    if predictor.segments and masks is None:
        raise ValueError(f"{bundle}: a segmentation bundle writes one mask per volume: give a folder for the masks")
    rows = []
    for path, error in collect_volumes(inputs):
        row: dict = {"path": str(path)}
        if error is None:
            try:
                p = predictor.predict([path])
            except VolumeError as e:
                error = e.problem
        if error is not None:
            rows.append({**row, "error": error})
            continue
        if predictor.segments:
            out = Path(masks) / f"{_stem(path)}_mask.nii.gz"
            out.parent.mkdir(parents=True, exist_ok=True)
            spacing = predictor.pre.spacing or (1.0, 1.0, 1.0)
            nib.save(nib.Nifti1Image(p.masks[0].astype(np.uint8), np.diag([*spacing, 1.0])), str(out))
            row |= {"volume_mm3": None if p.volumes_mm3 is None else float(p.volumes_mm3[0]),
                    "voxels": int(p.masks[0].sum()), "mask": str(out)}
        elif p.values is not None:
            row |= {t: float(v) for t, v in zip(p.classes, p.values[0])}
        else:
            probs = p.probabilities[0]
            row |= {"predicted": p.labels[0], "confidence": float(probs.max()),
                    **{f"p_{c}": float(v) for c, v in zip(p.classes, probs)}}
        rows.append(row)
    return rows


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else path.stem
