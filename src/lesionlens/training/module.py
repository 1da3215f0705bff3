"""The LightningModule: loss, regularisation, optimizer and the per-epoch validation metrics."""

from __future__ import annotations

import time

import lightning as L
import numpy as np
import torch
from torch import nn

from lesionlens.config import Monitor, TrainConfig, check_covers
from lesionlens.data.images import Preprocessing
from lesionlens.evaluation import metrics as M
from lesionlens.data.transforms import to_input
from lesionlens.models.freeze import keep_frozen_norms_in_eval
from lesionlens.training.distributed import gather_rows, reduce_sum
from lesionlens.training.mixing import BatchMixing, MixedBatch
from lesionlens.training.progressive import epoch_sizes, shrink
from lesionlens.training.optim import build_optimizer, build_scheduler, l1_penalty

# monitored validation metric -> whether larger ("max") or smaller ("min") is better
MONITOR_MODE = {"val_balanced_accuracy": "max", "val_macro_auc": "max", "val_accuracy": "max", "val_loss": "min",
                "val_jaccard": "max", "val_mae": "min"}
check_covers(MONITOR_MODE, Monitor, "monitored metric")


class Classifier(L.LightningModule):
    """Wraps any registered model. Batches arrive as uint8 images; normalisation happens here, on
    the training device, with the bundle's mean/std."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, pre: Preprocessing,
                 class_weights: torch.Tensor | None, steps_per_epoch: int, class_prior: torch.Tensor | None = None,
                 optimized: set[str] | None = None, lr_scale: dict[str, float] | None = None):
        super().__init__()
        self.model = model
        self.optimized = optimized  # parameter names the optimizer holds (None: the trainable ones)
        self.lr_scale = lr_scale
        self.cfg = cfg
        self.pre = pre
        self.steps_per_epoch = steps_per_epoch
        self.channels_last = cfg.channels_last
        self.loss_fn = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=cfg.label_smoothing)
        self.mixing = BatchMixing.from_config(cfg)  # None unless train.mixup or train.cutmix
        # progressive resizing's size per epoch; 2D classification only (check_progressive refuses volumes,
        # whose preprocessing has no single image size)
        self.epoch_sizes = epoch_sizes(cfg, pre.image_size) if cfg.progressive_size is not None else None
        # Logit adjustment (Menon et al., ICLR 2021): the loss sees logits + tau * log(prior), so the
        # network's own logits learn the class-balanced posterior; predictions use them unadjusted.
        bias = None
        if cfg.logit_adjustment > 0:
            if class_prior is None:
                raise ValueError("logit adjustment needs the training class frequencies")
            bias = cfg.logit_adjustment * torch.log(class_prior.clamp_min(1e-12))
        self.register_buffer("logit_bias", bias, persistent=False)
        self._val_logits: list[torch.Tensor] = []
        self._val_targets: list[torch.Tensor] = []
        self.images_seen = self.steps_seen = 0
        self.loss_sum = 0.0
        self._totals: tuple[int, list[float]] | None = None  # (epoch, the processes' summed totals)
        self.epoch_started = self.last_batch_ended = 0.0
        self.fit_started: float | None = None

    def train(self, mode: bool = True) -> "Classifier":
        """Lightning switches modes around every validation; frozen batch norm stays in eval mode."""
        super().train(mode)
        keep_frozen_norms_in_eval(self.model)
        return self

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """A batch as the network takes it: uint8 images normalised (and channels-last)."""
        return to_input(images, self.pre, self.channels_last)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.model_input(images))

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.logit_bias is not None:
            logits = logits + self.logit_bias
        return self.loss_fn(logits, targets)

    def on_fit_start(self) -> None:
        self.fit_started = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self.images_seen, self.steps_seen, self.loss_sum, self.epoch_started = 0, 0, 0.0, time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.last_batch_ended = time.perf_counter()

    def epoch_totals(self) -> tuple[float, float]:
        """The finished epoch's mean training loss and training throughput (images/s, data loading
        included, validation excluded), over all processes of a multi-process run: each process's
        rate adds up. Every process must call it (the first call of an epoch sums across them)."""
        if self._totals is None or self._totals[0] != self.current_epoch:
            rate = self.images_seen / max(self.last_batch_ended - self.epoch_started, 1e-9)
            self._totals = (self.current_epoch, reduce_sum([self.loss_sum, self.images_seen, rate]))
        loss_sum, images, rate = self._totals[1]
        return loss_sum / max(images, 1), rate

    @property
    def epoch_share(self) -> float:
        """The share of this epoch's steps trained so far: below 1 at its end where the time limit
        (train.max_minutes) stopped it, whose training loss and accuracy then cover its first steps only."""
        return self.steps_seen / max(self.trainer.num_training_batches, 1)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        inputs = self.model_input(images)
        if self.epoch_sizes is not None:  # progressive resizing: this epoch's training size
            inputs = shrink(inputs, self.epoch_sizes[min(self.current_epoch, len(self.epoch_sizes) - 1)])
        mixed = self.mixing(inputs) if self.mixing is not None else None
        if mixed is None:
            logits = self.model(inputs)
            loss, correct = self._loss(logits, targets), (logits.argmax(1) == targets).float()
        else:
            loss, correct = self._mixed_loss(mixed, targets)
        self.log("train_accuracy", correct.mean(), on_epoch=True, batch_size=len(targets), sync_dist=True)
        return self.step_loss(loss, len(targets))

    def _mixed_loss(self, mixed: MixedBatch, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A mixed batch's loss, both labels in the shares of the images (lesionlens.training.mixing),
        and each image's accuracy counted the same way."""
        logits = self.model(mixed.inputs)
        partners = targets[mixed.partners]
        loss = mixed.lam * self._loss(logits, targets) + (1.0 - mixed.lam) * self._loss(logits, partners)
        predicted = logits.argmax(1)
        correct = mixed.lam * (predicted == targets).float() + (1.0 - mixed.lam) * (predicted == partners).float()
        return loss, correct

    def step_loss(self, loss: torch.Tensor, n: int) -> torch.Tensor:
        """Log and count a training batch's data loss (of ``n`` images); what to minimise is that loss
        plus the L1 penalty, which is not logged as loss. Every kind of Classifier ends its step here."""
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.images_seen += n
        self.steps_seen += 1
        self.loss_sum += float(loss.detach()) * n
        if self.cfg.l1 > 0:
            loss = loss + self.cfg.l1 * l1_penalty(self.optimizers().optimizer)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train_images_per_s", self.epoch_totals()[1], sync_dist=True)  # the same sum in every process
        # minutes since this fit began (a resumed run counts from its restart), validation included:
        # what "how long until the model was this good" reads
        self.log("elapsed_minutes", (time.perf_counter() - (self.fit_started or self.epoch_started)) / 60,
                 sync_dist=True)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], sync_dist=True)
        self.log("train_epoch_fraction", self.epoch_share, sync_dist=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, targets = batch
        self._val_logits.append(self(images).float().cpu())
        self._val_targets.append(targets.cpu())

    @property
    def n_val(self) -> int:
        """Validation images in all (every process's share)."""
        return len(self.trainer.val_dataloaders.dataset)

    def _gathered_logits(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's validation logits and targets of every process, in the rows' order."""
        logits, targets = gather_rows([torch.cat(self._val_logits).numpy(), torch.cat(self._val_targets).numpy()],
                                      self.n_val)
        self._val_logits.clear()
        self._val_targets.clear()
        return torch.from_numpy(logits), torch.from_numpy(targets)

    def on_validation_epoch_end(self) -> None:
        logits, targets = self._gathered_logits()
        with torch.no_grad():  # the whole set's weighted loss, whatever the batches were
            self.log("val_loss", float(self._loss(logits.to(self.device), targets.to(self.device))), sync_dist=True)
        self._log_class_metrics(torch.softmax(logits, 1).numpy(), targets.numpy())

    def _log_class_metrics(self, probs: np.ndarray, targets: np.ndarray) -> None:
        # computed alike by every process from the gathered rows; sync_dist averages equal values
        cm = M.confusion_matrix(targets, probs.argmax(1), probs.shape[1])
        self.log("val_accuracy", float(np.trace(cm) / max(cm.sum(), 1)), prog_bar=False, sync_dist=True)
        self.log("val_balanced_accuracy", M.balanced_accuracy(cm), prog_bar=True, sync_dist=True)
        auc = M.macro_auc(targets, probs)
        self.log("val_macro_auc", auc if np.isfinite(auc) else 0.5, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.cfg, self.optimized, self.lr_scale)
        scheduler = build_scheduler(optimizer, self.cfg, self.steps_per_epoch, MONITOR_MODE[self.cfg.monitor])
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
