"""Optimizers and learning-rate schedules of the course material, built from a TrainConfig.

Every schedule but ``plateau`` is a per-step multiplier of the base rate, with an optional linear
warm-up, so a run can be resumed at any step and the curve drawn ahead of time.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from lesionlens.config import Optimizer as OptimizerName
from lesionlens.config import Schedule, TrainConfig, check_covers, choices

OptimizerFactory = Callable[[list[dict], TrainConfig], Optimizer]

OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": lambda p, c: torch.optim.SGD(p, lr=c.lr),
    "momentum": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum),
    "nesterov": lambda p, c: torch.optim.SGD(p, lr=c.lr, momentum=c.momentum, nesterov=True),
    "adagrad": lambda p, c: torch.optim.Adagrad(p, lr=c.lr),
    "rmsprop": lambda p, c: torch.optim.RMSprop(p, lr=c.lr, alpha=0.9, momentum=0.0),
    "adadelta": lambda p, c: torch.optim.Adadelta(p, lr=c.lr, rho=0.95),  # lr scales the step; 1.0 is the paper's
    "adam": lambda p, c: torch.optim.Adam(p, lr=c.lr),
    "nadam": lambda p, c: torch.optim.NAdam(p, lr=c.lr),
    "amsgrad": lambda p, c: torch.optim.Adam(p, lr=c.lr, amsgrad=True),
    "adamw": lambda p, c: torch.optim.AdamW(p, lr=c.lr),
}
check_covers(OPTIMIZERS, OptimizerName, "optimizer")

# What ``gamma`` means per schedule, and its default when the configuration leaves it unset.
DEFAULT_GAMMA = {"step": 0.1, "exponential": 0.8, "inverse_time": 0.5, "plateau": 0.1}


def parameter_groups(model: nn.Module, weight_decay: float, lr: float | None = None,
                     include: set[str] | None = None, lr_scale: dict[str, float] | None = None) -> list[dict]:
    """Weight decay on convolution and linear weights only: decaying biases and normalisation
    scales pulls them towards zero for no regularising benefit.

    ``include`` names the parameters to optimise (default: those with ``requires_grad``; a strategy
    that unfreezes later passes them all: frozen ones get no gradient and so no update), and
    ``lr_scale`` a learning-rate factor per parameter (discriminative rates; default 1).
    """
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if (name in include) if include is not None else p.requires_grad:
            scale = (lr_scale or {}).get(name, 1.0)
            groups.setdefault((scale, p.ndim > 1), []).append(p)
    out = []
    for (scale, decayed), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decayed else 0.0, "l1": decayed}
        if lr is not None:
            group["lr"] = lr * scale
        out.append(group)
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig, include: set[str] | None = None,
                    lr_scale: dict[str, float] | None = None) -> Optimizer:
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose one of {choices(OptimizerName)}")
    return OPTIMIZERS[cfg.optimizer](parameter_groups(model, cfg.weight_decay, cfg.lr, include, lr_scale), cfg)


def l1_penalty(optimizer: Optimizer) -> torch.Tensor:
    """Sum of |w| over the weights that are also weight-decayed (conv and linear weights)."""
    terms = [p.abs().sum() for g in optimizer.param_groups if g.get("l1") for p in g["params"]]
    return torch.stack(terms).sum() if terms else torch.zeros(())


# schedule -> the factor of the base rate at (epoch, progress through the post-warm-up steps in
# [0, 1], gamma, config); plateau has none: ReduceLROnPlateau decides from the monitored metric.
FACTORS: dict[str, Callable[[float, float, float, TrainConfig], float] | None] = {
    "constant": lambda epoch, progress, gamma, c: 1.0,
    "step": lambda epoch, progress, gamma, c: gamma ** math.floor(epoch / c.step_epochs),
    "exponential": lambda epoch, progress, gamma, c: gamma ** epoch,
    "inverse_time": lambda epoch, progress, gamma, c: 1.0 / (1.0 + gamma * epoch),
    "cosine": lambda epoch, progress, gamma, c: c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)),
    "plateau": None,
}
check_covers(FACTORS, Schedule, "learning-rate schedule")


def lr_multiplier(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Step -> factor of the base learning rate, for every schedule except ``plateau``."""
    gamma = cfg.gamma if cfg.gamma is not None else DEFAULT_GAMMA.get(cfg.schedule, 0.1)
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(1, cfg.epochs * steps_per_epoch)
    after_warmup = FACTORS.get(cfg.schedule)
    if after_warmup is None:
        raise ValueError(f"schedule {cfg.schedule!r} has no per-step factor; choose one of "
                         f"{[k for k, v in FACTORS.items() if v is not None]}")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return after_warmup(step / steps_per_epoch, progress, gamma, cfg)

    return factor


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig, steps_per_epoch: int, monitor_mode: str) -> dict:
    """A Lightning ``lr_scheduler`` configuration."""
    if cfg.schedule == "plateau":
        gamma = cfg.gamma if cfg.gamma is not None else DEFAULT_GAMMA["plateau"]
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=monitor_mode, factor=gamma, patience=cfg.plateau_patience)
        return {"scheduler": scheduler, "monitor": cfg.monitor, "interval": "epoch"}
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps_per_epoch))
    return {"scheduler": scheduler, "interval": "step"}
