"""Torch datasets over the decoded-image cache (with lesion masks for segmentation), class weights
and the balanced sampler."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from lesionlens.config import ClassWeights, choices


class CachedImages(Dataset):
    """Rows of a decoded uint8 N x H x W x 3 array, transformed on the fly; no file is opened.
    Targets are class indices, or float rows (N x K) for regression."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, targets: np.ndarray | None,
                 transform: Callable[[torch.Tensor], torch.Tensor]):
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)
        if targets is not None:
            targets = np.asarray(targets)
            targets = targets.astype(np.float32) if np.issubdtype(targets.dtype, np.floating) \
                else targets.astype(np.int64)
        self.targets = targets
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | torch.Tensor]:
        image = torch.from_numpy(np.array(self.array[self.rows[i]])).permute(2, 0, 1)
        if self.targets is None:
            target = -1
        elif self.targets.dtype == np.float32:
            target = torch.from_numpy(self.targets[i])
        else:
            target = int(self.targets[i])
        return self.transform(image), target


class CachedPairs(Dataset):
    """Rows of the decoded cache with their lesion masks (bool N x H x W, aligned with ``rows``) and
    class indices; ``transform(image, mask)`` moves both together (torchvision ``tv_tensors``)."""

    def __init__(self, array: np.ndarray, rows: np.ndarray, masks: np.ndarray, targets: np.ndarray,
                 transform: Callable | None = None):
        if len(masks) != len(rows) or len(targets) != len(rows):
            raise ValueError(f"{len(rows)} images, {len(masks)} masks and {len(targets)} labels")
        self.array, self.rows, self.masks = array, np.asarray(rows, dtype=np.int64), masks
        self.targets = np.asarray(targets, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        from torchvision import tv_tensors

        image = tv_tensors.Image(torch.from_numpy(np.array(self.array[self.rows[i]])).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(np.array(self.masks[i], dtype=np.uint8))[None])
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor), int(self.targets[i])


def class_weights(targets: np.ndarray, num_classes: int, mode: str) -> torch.Tensor | None:
    """Loss weights: ``balanced`` is inverse frequency, ``sqrt`` its square root (milder).

    Scaled so that the weighted mean over the training images is 1: the loss keeps its size.
    """
    if mode == "none":
        return None
    counts = np.bincount(targets, minlength=num_classes).astype(np.float64)
    w = np.where(counts > 0, len(targets) / (num_classes * np.maximum(counts, 1)), 0.0)
    if mode == "sqrt":
        w = np.sqrt(w)
    elif mode != "balanced":
        raise ValueError(f"unknown class weighting {mode!r}; choose one of {choices(ClassWeights)}")
    w /= (w * counts).sum() / len(targets)
    return torch.tensor(w, dtype=torch.float32)


def balanced_sampler(targets: np.ndarray, seed: int) -> WeightedRandomSampler:
    """Draws every class equally often (with replacement); an epoch stays ``len(targets)`` draws."""
    counts = np.bincount(targets)
    weights = 1.0 / counts[targets]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), len(targets),
                                 replacement=True, generator=generator)
