"""The segmentation losses, one per name of ``segment.loss`` (:data:`lesionlens.config.SegLoss`).

All take mask logits and 0/1 targets, both N x 1 x H x W:

- ``bce``: binary cross-entropy per pixel, averaged (torch);
- ``weighted_bce``: the same with each lesion pixel weighted by ``beta`` (``segment.pos_weight``):
  beta > 1 pushes towards recall of the lesion, as in the course's weighted cross-entropy;
- ``dice``: soft Dice, 1 - 2|P.G| / (|P| + |G|) per image, then averaged (MONAI ``DiceLoss``,
  ``batch=False``): every image counts the same, as in the per-image Jaccard that ISIC ranks;
- ``dice_global``: soft Dice with the sums pooled over the whole batch (``batch=True``): large
  lesions weigh more, and an image with a tiny lesion cannot dominate a batch;
- ``ce_dice``: binary cross-entropy + per-image Dice, equally weighted (MONAI ``DiceCELoss``; the
  loss of nnU-Net).
"""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss, DiceLoss
from torch import nn

from lesionlens.config import SegLoss, SegmentConfig, check_covers


class WeightedBCE(nn.Module):
    """Binary cross-entropy with the positive (lesion) pixels weighted by ``beta``."""

    def __init__(self, beta: float = 1.0):
        super().__init__()
        if beta <= 0:
            raise ValueError(f"segment.pos_weight must be positive, got {beta}")
        self.register_buffer("beta", torch.tensor([float(beta)]), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=self.beta)


_LOSSES = {
    "bce": lambda cfg: WeightedBCE(1.0),
    "weighted_bce": lambda cfg: WeightedBCE(cfg.pos_weight),
    "dice": lambda cfg: DiceLoss(sigmoid=True, batch=False),
    "dice_global": lambda cfg: DiceLoss(sigmoid=True, batch=True),
    "ce_dice": lambda cfg: DiceCELoss(sigmoid=True, batch=False),
}
check_covers(_LOSSES, SegLoss, "segmentation loss")


def segmentation_loss(cfg: SegmentConfig) -> nn.Module:
    """The loss ``cfg.loss`` names, as a module: ``loss(logits, target)`` -> a scalar."""
    return _LOSSES[cfg.loss](cfg)
