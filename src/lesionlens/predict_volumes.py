"""Predict NIfTI volumes with a volume bundle: class probabilities, or masks with the object's volume.

The bundle's card carries the :class:`~lesionlens.data.volumes.VolumePreprocessing` it was trained
with (grid, spacing, normalisation), so a file is prepared exactly as in training, never re-declared
here. Masks come back on the network's grid (the bundle's spacing and size, in the canonical RAS+
orientation); their volume in mm^3 is the number of mask voxels times the grid's voxel volume.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lesionlens.bundle.card import Card, read_card
from lesionlens.bundle.schema import BundleError
from lesionlens.data.volumes import preprocess_volume


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


@dataclass
class VolumePredictions:
    paths: list[str]
    classes: list[str]
    probabilities: np.ndarray | None = None  # N x C (classification bundles)
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
        from lesionlens.training.volume_fit import predict_volume_logits

        volumes = self.prepare(paths)
        out = predict_volume_logits(self.model, volumes, batch_size)
        names = [str(p) for p in paths]
        if self.segments:
            threshold = self.card.segmentation.threshold if self.card.segmentation else 0.5
            masks = 1 / (1 + np.exp(-out[:, 0])) > threshold
            voxel = float(np.prod(self.pre.spacing)) if self.pre.spacing else None
            return VolumePredictions(names, list(self.card.classes), masks=masks, voxel_mm3=voxel)
        return VolumePredictions(names, list(self.card.classes), probabilities=self.card.rule.probabilities(out))
