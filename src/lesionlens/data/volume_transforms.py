"""Training augmentation of volumes (and their masks, moved with them): MONAI dictionary transforms.

    flips along each axis -> quarter turns in each plane -> a small affine warp (rotation, zoom,
    shift) -> intensity scale and shift -> Gaussian noise

Geometric transforms act on the volume and its mask together (the mask by nearest neighbour, so it
stays binary); intensity transforms on the volume only. The volumes arrive already preprocessed
(:func:`lesionlens.data.volumes.preprocess_volume`: resampled to a common spacing, normalised), so
the intensity ranges below are in normalised units. MONAI's transforms are used rather than
hand-written ones: their 3D affine resampling and their random states are tested upstream.

Every draw comes from the transform's own random state, seeded by :func:`volume_transform`, so a run
is repeatable; each data-loading worker reseeds from its own torch seed (see
:class:`lesionlens.data.volume_dataset.Volumes`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch

IMAGE, MASK = "image", "mask"


@dataclass(frozen=True)
class VolumeAugment:
    """Random training-time changes of a volume. Anatomy has a canonical orientation (the reader
    turns every volume to RAS+), so in real scans flips and quarter turns make the network ignore
    left / right and orientation cues that may matter; they suit data without such cues (the
    synthetic volumes) and lesion shapes. Set a probability to 0 to leave a change out."""

    flip: float = 0.5  # probability of a flip, for each of the three axes
    quarter_turn: float = 0.5  # probability of 1-3 quarter turns, for each of the three planes
    affine: float = 0.3  # probability of the small affine warp below
    rotate_degrees: float = 10.0  # about each axis, uniform in [-d, d]
    zoom: float = 0.1  # scale uniform in [1 - zoom, 1 + zoom] along each axis
    shift_voxels: float = 2.0  # translation uniform in [-s, s] voxels along each axis
    intensity: float = 0.5  # probability of each of the intensity scale and shift
    intensity_scale: float = 0.1  # x (1 + f), f uniform in [-s, s]
    intensity_shift: float = 0.1  # + o, o uniform in [-s, s] (normalised units)
    noise: float = 0.3  # probability of additive Gaussian noise
    noise_std: float = 0.05  # its largest standard deviation (each draw picks one in [0, std])

    def __post_init__(self) -> None:
        for name in ("flip", "quarter_turn", "affine", "intensity", "noise"):
            p = getattr(self, name)
            if not 0 <= p <= 1:
                raise ValueError(f"volume augmentation {name} is a probability in [0, 1], got {p}")

    def to_dict(self) -> dict:
        return asdict(self)


NO_AUGMENT = VolumeAugment(0.0, 0.0, 0.0, intensity=0.0, noise=0.0)


def volume_transform(aug: VolumeAugment, seed: int, with_mask: bool = False) -> Callable[[dict], dict]:
    """A seeded transform of ``{"image": 1 x D x H x W float32[, "mask": 1 x D x H x W]}``."""
    from monai.transforms import (
        Compose,
        RandAffined,
        RandFlipd,
        RandGaussianNoised,
        RandRotate90d,
        RandScaleIntensityd,
        RandShiftIntensityd,
    )

    keys = [IMAGE, MASK] if with_mask else [IMAGE]
    steps: list = []
    if aug.flip > 0:
        steps += [RandFlipd(keys, prob=aug.flip, spatial_axis=axis) for axis in range(3)]
    if aug.quarter_turn > 0:
        steps += [RandRotate90d(keys, prob=aug.quarter_turn, max_k=3, spatial_axes=plane)
                  for plane in ((0, 1), (0, 2), (1, 2))]
    if aug.affine > 0:
        angle = math.radians(aug.rotate_degrees)
        steps.append(RandAffined(
            keys, prob=aug.affine, rotate_range=(angle,) * 3, scale_range=(aug.zoom,) * 3,
            translate_range=(aug.shift_voxels,) * 3,
            mode=("bilinear", "nearest")[: len(keys)], padding_mode="border",
        ))
    if aug.intensity > 0:
        steps += [RandScaleIntensityd(IMAGE, factors=aug.intensity_scale, prob=aug.intensity),
                  RandShiftIntensityd(IMAGE, offsets=aug.intensity_shift, prob=aug.intensity)]
    if aug.noise > 0:
        steps.append(RandGaussianNoised(IMAGE, prob=aug.noise, std=aug.noise_std))
    transform = Compose(steps)
    transform.set_random_state(seed=seed % 2 ** 32)
    return transform


def apply(transform: Callable[[dict], dict], image: np.ndarray,
          mask: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``transform`` on one volume (D x H x W) and its mask: plain 1 x D x H x W tensors back (float32
    volume, uint8 mask), without MONAI's metadata."""
    sample = {IMAGE: torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]}
    if mask is not None:
        sample[MASK] = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]
    out = transform(sample)
    x = torch.as_tensor(out[IMAGE]).as_subclass(torch.Tensor).float().contiguous()
    m = None if mask is None else (torch.as_tensor(out[MASK]).as_subclass(torch.Tensor) > 0.5).to(torch.uint8)
    return x, m
