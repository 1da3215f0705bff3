"""The LightningModule of segmentation and multi-task runs: the mask loss (plus the classification
loss), and the per-epoch validation Jaccard that picks the kept epoch.

It extends :class:`~lesionlens.training.module.Classifier`, which keeps the optimizer, schedule,
logit adjustment, timing and frozen-batch-norm handling in one place. Batches are
``(images, masks, targets)``: uint8 images, 0/1 masks (N x 1 x H x W) and class indices.
"""

from __future__ import annotations

import torch
from torch import nn

from lesionlens.config import SegmentConfig, TrainConfig
from lesionlens.data.images import Preprocessing
from lesionlens.training.distributed import gather_rows
from lesionlens.training.module import Classifier
from lesionlens.training.seg_losses import segmentation_loss


class Segmenter(Classifier):
    """A :class:`~lesionlens.models.unet.UNet`; with ``multitask`` its forward also gives class
    logits, trained with the classifier's loss weighted by ``segment.class_weight``."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, seg: SegmentConfig, pre: Preprocessing,
                 steps_per_epoch: int, multitask: bool = False, class_weights: torch.Tensor | None = None,
                 class_prior: torch.Tensor | None = None):
        super().__init__(model, cfg, pre, class_weights, steps_per_epoch,
                         class_prior=class_prior, optimized=None, lr_scale=None)
        self.seg = seg
        self.multitask = multitask
        self.mask_loss = segmentation_loss(seg)
        self._overlap: list[torch.Tensor] = []  # per validation image: intersection, union, |P| + |G|

    def _losses(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        images, masks, targets = batch
        out = self(images)
        mask_logits, class_logits = out if self.multitask else (out, None)
        loss = self.mask_loss(mask_logits.float(), masks.float())
        if class_logits is not None:
            loss = loss + self.seg.class_weight * self._loss(class_logits, targets)
        return loss, mask_logits, class_logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, _, _ = self._losses(batch)
        return self.step_loss(loss, len(batch[0]))

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, mask_logits, class_logits = self._losses(batch)
        masks = batch[1].bool()
        predicted = torch.sigmoid(mask_logits.float()) > self.seg.threshold
        inter = (predicted & masks).flatten(1).sum(1)
        union = (predicted | masks).flatten(1).sum(1)
        sizes = predicted.flatten(1).sum(1) + masks.flatten(1).sum(1)
        # per image: intersection, union, |P| + |G|, and its batch's loss (the mean weighs images alike)
        self._overlap.append(torch.stack([inter.double(), union.double(), sizes.double(),
                                          loss.detach().double().expand(len(masks))], 1).cpu())
        if class_logits is not None:
            self._val_logits.append(class_logits.float().cpu())
            self._val_targets.append(batch[2].cpu())

    def on_validation_epoch_end(self) -> None:
        (overlap,) = gather_rows([torch.cat(self._overlap).numpy()], self.n_val)
        self._overlap.clear()
        inter, union, sizes, loss = torch.from_numpy(overlap).unbind(1)
        # an image with neither a true nor a predicted lesion is a perfect match
        jaccard = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
        dice = torch.where(sizes > 0, 2 * inter / sizes.clamp_min(1), torch.ones_like(sizes))
        self.log("val_loss", float(loss.mean()), sync_dist=True)
        self.log("val_jaccard", float(jaccard.mean()), prog_bar=True, sync_dist=True)
        self.log("val_dice", float(dice.mean()), sync_dist=True)
        if self.multitask:  # accuracy, balanced accuracy, macro AUC of the class head
            logits, targets = self._gathered_logits()
            self._log_class_metrics(torch.softmax(logits, 1).numpy(), targets.numpy())
