"""Training augmentation (torchvision.transforms.v2) on cached uint8 images, and the batched
conversion of uint8 images into the network's input.

Images stay uint8 CxHxW, already at the model's input size, through augmentation; the rescale to
[0, 1] and the weights' mean/std standardisation happen batched, on the training device
(:func:`to_input`), the same way for training, evaluation and prediction.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from lesionlens.config import AugmentConfig
from lesionlens.data.images import Preprocessing


def train_transform(aug: AugmentConfig) -> v2.Transform:
    """Flips, rotation + translation + zoom (one affine warp), then colour jitter."""
    steps: list[v2.Transform] = []
    if aug.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(aug.hflip))
    if aug.vflip > 0:
        steps.append(v2.RandomVerticalFlip(aug.vflip))
    if aug.rotation > 0 or aug.translate > 0 or tuple(aug.zoom) != (1.0, 1.0):
        steps.append(v2.RandomAffine(
            degrees=aug.rotation,
            translate=(aug.translate, aug.translate) if aug.translate > 0 else None,
            scale=tuple(aug.zoom),
            interpolation=v2.InterpolationMode.BILINEAR,
        ))
    if max(aug.brightness, aug.contrast, aug.saturation, aug.hue) > 0:
        steps.append(v2.ColorJitter(aug.brightness, aug.contrast, aug.saturation, aug.hue))
    return v2.Compose(steps) if steps else v2.Identity()


def to_input(batch: torch.Tensor, pre: Preprocessing, channels_last: bool = True) -> torch.Tensor:
    """N x 3 x H x W uint8 -> the float input the weights expect (rescale to [0, 1], mean/std)."""
    mean = torch.tensor(pre.mean, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=batch.device).view(1, 3, 1, 1)
    x = (batch.float() / 255.0 - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
