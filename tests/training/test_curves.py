"""The learning-curve figure: what it marks and how it labels validation curves."""

import pandas as pd

from lesionlens.training.curves import best_epoch, cut_epoch, epoch_table, kept_epoch, learning_curves_figure


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


def test_the_epoch_table_keeps_epoch_means_under_their_own_names(tmp_path):
    """Lightning's CSV log as it writes it: step rows, then an epoch row; values logged per step and
    per epoch end in _step / _epoch. The table keeps one row per epoch with the epoch means named
    train_loss and train_accuracy (the names the curves draw), and no per-step columns."""
    pd.DataFrame({
        "epoch": [0, 0, 0, 1, 1],
        "step": [9, 19, 19, 29, 39],
        "train_loss_step": [1.2, 1.0, None, 0.8, None],
        "train_accuracy_step": [0.4, 0.5, None, 0.6, None],
        "train_loss_epoch": [None, None, 1.1, None, 0.75],
        "train_accuracy_epoch": [None, None, 0.45, None, 0.62],
        "val_balanced_accuracy": [None, None, 0.5, None, 0.6],
    }).to_csv(tmp_path / "metrics.csv", index=False)
    table = epoch_table(tmp_path)
    assert list(table.index) == [1, 2]
    assert sorted(table.columns) == ["train_accuracy", "train_loss", "val_balanced_accuracy"]
    assert list(table["train_accuracy"]) == [0.45, 0.62] and list(table["train_loss"]) == [1.1, 0.75]


def test_an_epoch_cut_by_the_time_limit_has_its_training_figures_drawn_apart():
    """train.max_minutes stopped epoch 3 after 4% of its steps: its training loss (0.9, over those
    first steps) is not joined to the whole epochs' curve, and its label says why; validation ran on
    the weights as they were, so its point stays on the curve."""
    history = _history().assign(train_epoch_fraction=[1.0, 1.0, 0.04], train_accuracy=[0.5, 0.7, 0.4])
    history.loc[3, "train_loss"] = 0.9
    assert cut_epoch(history) == (3, 0.04)
    fig = learning_curves_figure(history, "val_balanced_accuracy")
    loss, scores, _ = fig.axes
    assert _labels(loss) == ["train loss", "train loss, epoch 3: its first 4% (time limit)", "val loss"]
    whole, cut, val = loss.get_lines()
    assert list(whole.get_xdata()) == [1, 2] and list(cut.get_ydata()) == [0.9] and cut.get_markerfacecolor() == "none"
    assert list(val.get_xdata()) == [1, 2, 3]
    assert "train accuracy, epoch 3: its first 4% (time limit)" in _labels(scores)
    assert "val balanced accuracy" in _labels(scores)


def test_whole_epochs_and_older_logs_have_no_cut_epoch():
    assert cut_epoch(_history()) is None  # a log written before train_epoch_fraction was
    assert cut_epoch(_history().assign(train_epoch_fraction=1.0)) is None
    assert cut_epoch(pd.DataFrame()) is None
    fig = learning_curves_figure(_history().assign(train_epoch_fraction=1.0), "val_balanced_accuracy")
    assert _labels(fig.axes[0]) == ["train loss", "val loss"]


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
