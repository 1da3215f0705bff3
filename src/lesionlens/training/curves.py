"""A run's per-epoch record from its CSV log: the epoch table, which epoch the run keeps, and the
learning curves (loss, scores and learning rate against epochs)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lesionlens.training.module import MONITOR_MODE  # noqa: E402


def log_files(log_dir: Path) -> list[Path]:
    """The run's CSV logs in order: ``metrics.<k>.csv`` kept from before each resume, then ``metrics.csv``."""
    kept = sorted(log_dir.glob("metrics.*.csv"), key=lambda p: int(p.suffixes[0][1:]))
    current = log_dir / "metrics.csv"
    return kept + ([current] if current.is_file() else [])


def keep_log_for_resume(log_dir: Path, last_epoch: int) -> None:
    """Lightning's CSV logger deletes ``metrics.csv`` when it starts; before a resume, move it aside
    as ``metrics.<k>.csv``, keeping the epochs up to the checkpoint (``last_epoch``, 0-based)."""
    current = log_dir / "metrics.csv"
    if not current.is_file():
        return
    rows = pd.read_csv(current)
    k = len(list(log_dir.glob("metrics.*.csv")))
    rows[rows["epoch"] <= last_epoch].to_csv(log_dir / f"metrics.{k}.csv", index=False)
    current.unlink()


def epoch_table(log_dir: Path) -> pd.DataFrame:
    """One row per epoch from Lightning's CSV logs (which also hold per-step rows). A value logged both
    per step and per epoch (``train_loss``, ``train_accuracy``) keeps its epoch mean, under its own name."""
    files = log_files(log_dir)
    if not files:
        return pd.DataFrame()
    raw = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    cols = [c for c in raw.columns if c != "step" and not c.endswith("_step")]
    per_epoch = raw[cols].groupby("epoch").agg(lambda s: s.dropna().iloc[-1] if s.notna().any() else float("nan"))
    both = {c: c.removesuffix("_epoch") for c in cols
            if c.endswith("_epoch") and f"{c.removesuffix('_epoch')}_step" in raw}
    per_epoch = per_epoch.rename(columns=both)
    per_epoch.index = per_epoch.index.astype(int) + 1  # epochs counted from 1 for people
    return per_epoch


def best_epoch(history: pd.DataFrame, monitor: str) -> int | None:
    """The epoch (counted from 1) with the best ``monitor`` in ``epoch_table``; None where it was never logged."""
    if monitor not in history or history[monitor].isna().all():
        return None
    return int(history[monitor].idxmin() if MONITOR_MODE[monitor] == "min" else history[monitor].idxmax())


def kept_epoch(history: pd.DataFrame, monitor: str | None, train_on_val: bool) -> int | None:
    """The epoch whose weights a run keeps: the last with ``data.train_on_val`` (the validation
    images were trained on, so no epoch is chosen on them), else the best by ``monitor``."""
    if history.empty:
        return None
    if train_on_val:
        return int(history.index[-1])
    return best_epoch(history, monitor) if monitor else None


def cut_epoch(history: pd.DataFrame) -> tuple[int, float] | None:
    """The last epoch and the share of its steps trained, where the time limit (``train.max_minutes``)
    stopped it part-way (``train_epoch_fraction`` below 1); None where every epoch ran whole, and for
    logs written before that column was."""
    if history.empty or "train_epoch_fraction" not in history:
        return None
    share = history["train_epoch_fraction"].iloc[-1]
    return None if pd.isna(share) or share >= 1 else (int(history.index[-1]), float(share))


def plot_learning_curves(log_dir: Path, path: Path, monitor: str | None = None, title: str = "",
                         val_trained_on: bool = False) -> Path | None:
    """The run's curves (``learning_curves_figure``) drawn to ``path``; None before the first epoch."""
    df = epoch_table(log_dir)
    if df.empty:
        return None
    fig = learning_curves_figure(df, monitor, title, val_trained_on)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def learning_curves_figure(df: pd.DataFrame, monitor: str | None = None, title: str = "",
                           val_trained_on: bool = False) -> plt.Figure:
    """Loss, scores and learning rate per epoch of ``epoch_table``. With ``val_trained_on``
    (``data.train_on_val``) the validation curves are labelled as fitted images, the loss panel does
    not offer them as an over-fitting check, and the marked epoch is the last (the one kept), not the
    best. An epoch the time limit cut short (``cut_epoch``) has its training loss and accuracy drawn
    apart from the others': they are averages over its first steps only."""
    seen = " (trained on)" if val_trained_on else ""

    def label(col: str) -> str:
        return col.replace("_", " ") + (seen if col.startswith("val_") else "")

    cut = cut_epoch(df)

    def draw(ax: plt.Axes, col: str, style: str) -> None:
        # a cut epoch's training figures cover its first steps only: drawn apart, hollow, and said so
        full = df[col].iloc[:-1] if cut and col.startswith("train_") else df[col]
        (line,) = ax.plot(full.index, full, style, label=label(col), ms=4)
        if len(full) < len(df):
            ax.plot([cut[0]], [df[col].iloc[-1]], style[-1], color=line.get_color(), mfc="none", ms=6,
                    label=f"{label(col)}, epoch {cut[0]}: its first {cut[1]:.0%} (time limit)")

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    ax = axes[0]
    for col, style in (("train_loss", "-o"), ("val_loss", "-s")):
        if col in df:
            draw(ax, col, style)
    ax.set(xlabel="epoch", ylabel="loss", title="loss (validation images trained on too: no over-fitting check)"
           if val_trained_on else "loss (a widening gap = over-fitting)")
    ax.legend()
    ax = axes[1]
    for col in ("train_accuracy", "val_accuracy", "val_balanced_accuracy", "val_macro_auc", "val_jaccard", "val_dice",
                "val_r2"):
        if col in df:
            draw(ax, col, "-o")
    kept = kept_epoch(df, monitor, val_trained_on)
    if kept is not None:
        ax.axvline(kept, color="grey", ls="--", lw=1,
                   label=f"kept: the last epoch ({kept})" if val_trained_on else f"best epoch ({kept})")
    ax.set(xlabel="epoch", ylabel="score", ylim=(0, 1.02), title="scores")
    ax.legend(fontsize=8, loc="lower right")
    ax = axes[2]
    if "lr" in df:
        ax.plot(df.index, df["lr"], "-o", ms=4)
    positive = "lr" in df and (df["lr"].dropna() > 0).all() and df["lr"].notna().any()
    ax.set(xlabel="epoch", ylabel="learning rate (end of epoch)", title="learning rate",
           yscale="log" if positive else "linear")
    for a in axes:
        a.grid(alpha=0.3)
        a.xaxis.get_major_locator().set_params(integer=True)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


class LearningCurves(L.Callback):
    """Redraws the curves at the start of every epoch, so a long run can be watched as it goes."""

    def __init__(self, log_dir: Path, path: Path, monitor: str, val_trained_on: bool = False):
        self.log_dir, self.path, self.monitor, self.val_trained_on = log_dir, path, monitor, val_trained_on

    def _draw(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:  # process 0 writes the run's files
            return
        for logger in trainer.loggers:
            logger.save()
        plot_learning_curves(self.log_dir, self.path, self.monitor, val_trained_on=self.val_trained_on)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._draw(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._draw(trainer)
