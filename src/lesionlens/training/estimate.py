"""What a training run will cost, said before it starts: a timed forward and backward pass of the
run's network at its input size, scaled by the strategy and the number of images.

    lesionlens train ...    prints the estimate before the first epoch
    lesionlens explore ...  skips the grid cells that would overrun the budget
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from lesionlens.config import RunConfig
from lesionlens.models.registry import create_model
from lesionlens.training.progressive import relative_cost

FORWARD_BACKWARD = 3.0  # a training step costs about three forward passes
# Data loading and augmentation, the optimizer step, validation each epoch. Measured on 2 cores with
# nothing else running: the default recipe's fit took 36.9 ms per training image and epoch, 1.08x its
# timed pass (34 ms); 1.2 leaves room for a busier machine (explore skips what would overrun).
OVERHEAD = 1.2
HEAD_BACKWARD = 1.2  # a frozen-backbone step: the forward pass plus the head's small backward pass


@dataclass(frozen=True)
class Estimate:
    minutes: float
    seconds_per_image: float  # one measured forward + backward pass, per image
    images: int  # training images per epoch
    epochs: int  # passes over them (1 for the features strategy)

    def describe(self) -> str:
        when = "under a minute" if self.minutes < 1 else f"about {self.minutes:.0f} min"
        return (f"{when} on this machine ({self.images:,} images x {self.epochs} "
                f"epoch{'s' if self.epochs != 1 else ''}; a timed training step took "
                f"{self.seconds_per_image * 1000:.0f} ms per image)")


def seconds_per_image(cfg: RunConfig, image_size: int, batch: int = 8) -> float:
    """Measured: one forward and backward pass of a batch at the run's input size and memory format,
    per image, on a throwaway copy of the network (random weights: the cost is the same). The
    random-number state is restored afterwards, so measuring changes nothing about the run."""
    layout = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    with torch.random.fork_rng():
        model = create_model(cfg.model.name, 2, head=cfg.model.head, image_size=image_size)
        model = model.to(memory_format=layout).train()
        x = torch.randn(batch, 3, image_size, image_size).contiguous(memory_format=layout)
        model(x).sum().backward()  # the first pass also allocates and picks kernels: not timed
        started = time.perf_counter()
        model(x).sum().backward()
        return (time.perf_counter() - started) / batch


def estimate(cfg: RunConfig, n_images: int, image_size: int) -> Estimate:
    """Training time from one timed forward + backward pass: all of it every epoch for full training,
    the forward pass (and a small head) for a frozen backbone, in between for ``deep``, one forward
    pass in all for ``features``; plus evaluation and loading."""
    per_image = seconds_per_image(cfg, image_size)
    forward = per_image / FORWARD_BACKWARD
    epochs = cfg.train.epochs
    if cfg.train.strategy == "features":
        seconds, epochs = n_images * forward, 1
    elif cfg.train.strategy in ("baseline", "shallow"):  # no backward pass through the frozen backbone
        seconds = n_images * forward * HEAD_BACKWARD * epochs
    elif cfg.train.strategy == "deep":  # the backward pass reaches further down epoch by epoch
        seconds = n_images * (forward + per_image) / 2 * epochs
    else:  # progressive resizing: the early epochs' steps cost their share of the pixels
        seconds = n_images * per_image * epochs * relative_cost(cfg.train, image_size)
    return Estimate(seconds * OVERHEAD / 60, per_image, n_images, epochs)
