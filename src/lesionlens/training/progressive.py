"""Progressive resizing: the first epochs train on smaller images, growing linearly to the model's
input size, for more epochs in the same time.

A step's cost grows with the pixels, so an epoch at 192 px costs about (192 / 260)^2 = 55% of one at
260 px. fastai's DAWNBench runs and EfficientNetV2's progressive learning (Tan & Le, 2021) train small
first; Touvron et al. (FixRes, 2019) found that networks trained at a lower size than they are tested
at do well, so validation, the kept model and prediction always use the full size.

Images are loaded, cached and augmented at the full size as always; each training batch is shrunk on
the training device (bilinear with antialiasing), which costs little next to the network. The sizes
depend on the epoch alone, so ``--resume`` and several processes agree on them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lesionlens.config import ConfigError, TrainConfig

SIZE_STEP = 8  # sizes between the first and the last are rounded to a multiple of this


def epoch_sizes(cfg: TrainConfig, full: int) -> list[int] | None:
    """The training size of every epoch (0-based), or None without progressive resizing."""
    if cfg.progressive_size is None:
        return None
    start, ramp = cfg.progressive_size, growth_epochs(cfg)
    sizes = []
    for epoch in range(cfg.epochs):
        if epoch >= ramp:
            sizes.append(full)
            continue
        size = start + (full - start) * epoch / ramp
        sizes.append(min(max(start, SIZE_STEP * round(size / SIZE_STEP)), full))
    return sizes


def growth_epochs(cfg: TrainConfig) -> float:
    """Epochs over which the size grows: train.progressive_epochs, else half the epochs."""
    return cfg.progressive_epochs if cfg.progressive_epochs is not None else cfg.epochs / 2


def relative_cost(cfg: TrainConfig, full: int) -> float:
    """The run's training cost against every epoch at the full size (steps scale with the pixels)."""
    sizes = epoch_sizes(cfg, full)
    if not sizes:
        return 1.0
    return sum((s / full) ** 2 for s in sizes) / len(sizes)


def describe_progressive(cfg: TrainConfig, full: int) -> str:
    """``, from N px ...`` for the plan sentence, or nothing."""
    sizes = epoch_sizes(cfg, full)
    if not sizes:
        return ""
    ramp = math.ceil(growth_epochs(cfg))
    return (f", training images growing from {sizes[0]} px to {full} px over the first {ramp} epoch"
            f"{'s' if ramp != 1 else ''} ({relative_cost(cfg, full):.0%} of the full-size cost)")


def check_progressive(cfg: TrainConfig, task: str, volumes: bool = False) -> None:
    """Refuse what progressive resizing cannot do, naming the key, before any data is read (the size
    against the model's is checked by :func:`check_progressive_size` once that is known)."""
    if cfg.progressive_size is None:
        if cfg.progressive_epochs is not None:
            raise ConfigError("train.progressive_epochs is set but train.progressive_size is not: set the first "
                              "epoch's size (--progressive-size) too")
        return
    if volumes or task != "classification":
        what = "volumes" if volumes else f"--task {task} (its masks would need resizing too)"
        raise ConfigError(f"train.progressive_size resizes 2D classification batches; not supported for {what}")
    if cfg.strategy == "features":
        raise ConfigError("train.progressive_size needs a trained network; the features strategy fits a "
                          "scikit-learn classifier on fixed embeddings")
    if cfg.progressive_size < 32:
        raise ConfigError(f"train.progressive_size must be at least 32 px, got {cfg.progressive_size}")
    if cfg.progressive_epochs is not None and not 0 < cfg.progressive_epochs <= cfg.epochs:
        raise ConfigError(f"train.progressive_epochs must lie in (0, train.epochs = {cfg.epochs}], "
                          f"got {cfg.progressive_epochs}")


def check_progressive_size(cfg: TrainConfig, full: int) -> None:
    if cfg.progressive_size is not None and cfg.progressive_size >= full:
        raise ConfigError(f"train.progressive_size ({cfg.progressive_size} px) must be below the model's input size "
                          f"({full} px): the first epochs train on smaller images")


def shrink(inputs: torch.Tensor, size: int) -> torch.Tensor:
    """A batch (N x C x H x W) resized to ``size`` x ``size``, keeping its memory format."""
    if inputs.shape[-1] == size and inputs.shape[-2] == size:
        return inputs
    channels_last = inputs.is_contiguous(memory_format=torch.channels_last)
    out = F.interpolate(inputs, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out
