"""Weight averaging: an exponential moving average (EMA) of the network's weights, validated and kept
in place of the weights of the last step.

Lightning's ``WeightAveraging`` callback does the work (it keeps a ``torch.optim.swa_utils.AveragedModel``,
swaps it in for every validation, writes it to the checkpoints' ``state_dict`` with the raw weights
beside it for ``--resume``, and copies it into the network when training ends); this module supplies
the averaging rule. The decay warms up as in timm's ``ModelEmaV3`` (``min(decay, (1 + n) / (10 + n))``
after ``n`` updates): with a fixed decay of 0.999 a 600-step run would keep 55% of its starting weights.
"""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import WeightAveraging

from lesionlens.config import ConfigError


def ema_decay_after(updates: torch.Tensor | int, decay: float) -> torch.Tensor:
    """The decay applied at the update after ``updates`` earlier ones: warmed up, capped at ``decay``."""
    n = torch.as_tensor(updates, dtype=torch.float64)
    return torch.clamp((1 + n) / (10 + n), max=decay)


def warm_ema(decay: float):
    """``AveragedModel``'s ``avg_fn``: the averaged tensor moved towards the current one."""
    if not 0.0 < decay < 1.0:
        raise ConfigError(f"train.ema_decay must lie strictly between 0 and 1, got {decay}")

    def average(averaged: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        d = ema_decay_after(updates, decay).to(averaged.device)
        if not averaged.is_floating_point():  # counters such as num_batches_tracked follow the network
            return current
        return averaged * d.to(averaged.dtype) + current * (1 - d).to(averaged.dtype)

    return average


class ExponentialAveraging(WeightAveraging):
    """An EMA of the weights and buffers (batch-norm statistics too), updated after every optimizer step."""

    def __init__(self, decay: float):
        super().__init__(avg_fn=warm_ema(decay), use_buffers=True)
