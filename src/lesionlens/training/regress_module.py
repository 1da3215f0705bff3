"""The LightningModule of regression runs: the network's K outputs are the K targets standardised
by their training mean and standard deviation, the loss (MSE, MAE or Huber) is taken on that scale,
and the per-epoch validation MAE, RMSE and R^2 are in the targets' own units.

It extends :class:`~lesionlens.training.module.Classifier`, which keeps the optimizer, schedule,
timing, frozen-batch-norm handling and the gathering of validation rows across processes in one
place. Batches are ``(images, targets)``: uint8 images and float targets (N x K).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from lesionlens.config import RegLoss, RegressionConfig, TrainConfig, check_covers
from lesionlens.data.images import Preprocessing
from lesionlens.training.module import Classifier

LOSSES = {
    "mse": lambda cfg: nn.MSELoss(),
    "mae": lambda cfg: nn.L1Loss(),
    "huber": lambda cfg: nn.HuberLoss(delta=cfg.huber_delta),
}
check_covers(LOSSES, RegLoss, "regression loss")


class Regressor(Classifier):
    """Any registered model with one output per target; ``mean`` and ``std`` (K) standardise the targets."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, reg: RegressionConfig, pre: Preprocessing,
                 steps_per_epoch: int, mean: np.ndarray, std: np.ndarray,
                 optimized: set[str] | None = None, lr_scale: dict[str, float] | None = None):
        # logit adjustment and label smoothing are for classes
        super().__init__(model, replace(cfg, logit_adjustment=0.0, label_smoothing=0.0), pre, None, steps_per_epoch,
                         class_prior=None, optimized=optimized, lr_scale=lr_scale)
        self.register_buffer("target_mean", torch.as_tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("target_std", torch.as_tensor(std, dtype=torch.float32), persistent=False)
        self.loss_fn = LOSSES[reg.loss](reg)

    def _loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(outputs.float(), (targets.float() - self.target_mean) / self.target_std)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, targets = batch
        return self.step_loss(self._loss(self(images), targets), len(targets))

    def on_validation_epoch_end(self) -> None:
        outputs, targets = self._gathered_logits()
        with torch.no_grad():
            self.log("val_loss", float(self._loss(outputs.to(self.device), targets.to(self.device))), sync_dist=True)
        predicted = outputs.double() * self.target_std.double().cpu() + self.target_mean.double().cpu()
        truth = targets.double()
        error = predicted - truth
        total = ((truth - truth.mean(0)) ** 2).sum(0)
        r2 = torch.where(total > 0, 1 - (error ** 2).sum(0) / total.clamp_min(1e-300), torch.zeros_like(total))
        self.log("val_mae", float(error.abs().mean()), prog_bar=True, sync_dist=True)
        self.log("val_rmse", float(torch.sqrt((error ** 2).mean(0)).mean()), sync_dist=True)
        self.log("val_r2", float(r2.mean()), prog_bar=True, sync_dist=True)
