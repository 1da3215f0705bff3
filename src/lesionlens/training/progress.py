"""One readable line per epoch, whether or not the output is a terminal."""

from __future__ import annotations

import sys
import time

import lightning as L


class EpochReport(L.Callback):
    """Prints ``epoch 3/10  train loss 0.61 | val loss 0.70  bal. acc 0.62  AUC 0.90 | 24 img/s, 3m12s``."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss, rate = pl_module.epoch_totals()  # every process takes part; process 0 prints
        if not trainer.is_global_zero:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        elapsed = time.perf_counter() - self.started
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        share = pl_module.epoch_share
        parts.append(f"train loss {loss:.3f}" + (f" (its first {share:.0%}: time limit)" if share < 1 else ""))
        val = [f"{label} {m[k]:.3f}" for k, label in (("val_loss", "val loss"), ("val_accuracy", "acc"),
                                                     ("val_balanced_accuracy", "bal. acc"),
                                                     ("val_macro_auc", "macro AUC"), ("val_jaccard", "Jaccard"),
                                                     ("val_dice", "Dice"), ("val_mae", "MAE"),
                                                     ("val_r2", "R^2")) if k in m]
        if val:
            parts.append("  ".join(val))
        parts.append(f"{rate:.1f} img/s, {int(elapsed // 60)}m{int(elapsed % 60):02d}s")
        print(" | ".join(parts), file=self.stream, flush=True)
