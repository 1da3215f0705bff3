"""The learning-curve figure: what it marks and how it labels validation curves."""

import pandas as pd

from lesionlens.training.curves import best_epoch, kept_epoch, learning_curves_figure


def _history() -> pd.DataFrame:
    # the best validation balanced accuracy is at epoch 2, the last epoch is 3
    return pd.DataFrame({"train_loss": [0.9, 0.6, 0.4], "val_loss": [0.8, 0.5, 0.55],
                         "val_balanced_accuracy": [0.5, 0.8, 0.7], "lr": [1e-3, 5e-4, 1e-5]},
                        index=pd.Index([1, 2, 3], name="epoch"))


def _labels(ax) -> list[str]:
    return ax.get_legend_handles_labels()[1]


def test_a_held_out_run_marks_its_best_epoch_and_reads_the_gap_as_over_fitting():
    fig = learning_curves_figure(_history(), "val_balanced_accuracy")
    loss, scores, _ = fig.axes
    assert loss.get_title() == "loss (a widening gap = over-fitting)"
    assert _labels(loss) == ["train loss", "val loss"]
    assert _labels(scores) == ["val balanced accuracy", "best epoch (2)"]


def test_a_run_trained_on_its_validation_images_says_so_and_marks_the_last_epoch():
    """data.train_on_val: the validation figures are on fitted images and the last epoch is kept, so
    the plot must neither offer the loss gap as an over-fitting check nor mark the 'best' epoch."""
    fig = learning_curves_figure(_history(), "val_balanced_accuracy", val_trained_on=True)
    loss, scores, _ = fig.axes
    assert "no over-fitting check" in loss.get_title()
    assert _labels(loss) == ["train loss", "val loss (trained on)"]
    assert _labels(scores) == ["val balanced accuracy (trained on)", "kept: the last epoch (3)"]


def test_the_kept_epoch_is_the_best_by_the_monitor_or_the_last_when_validation_was_trained_on():
    history = _history()
    assert best_epoch(history, "val_balanced_accuracy") == 2  # higher is better
    assert best_epoch(history, "val_loss") == 2 and best_epoch(history.iloc[:1], "val_loss") == 1  # lower is better
    assert kept_epoch(history, "val_balanced_accuracy", train_on_val=False) == 2
    assert kept_epoch(history, "val_balanced_accuracy", train_on_val=True) == 3
    assert best_epoch(history, "val_macro_auc") is None  # never logged
    history["val_macro_auc"] = float("nan")
    assert best_epoch(history, "val_macro_auc") is None  # logged, never computed
    assert kept_epoch(history.iloc[:0], "val_loss", train_on_val=True) is None  # before the first epoch
