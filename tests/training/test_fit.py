"""Training end to end on generated images: the bundle, its card, reloading, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import reloaded_matches_saved, tiny_run_config as _cfg
import yaml

from lesionlens.bundle.card import BundleError, read_card
from lesionlens.inference import Predictor
from lesionlens.models.registry import create_model
from lesionlens.training import curves
from lesionlens.training.curves import epoch_table
from lesionlens.training.fit import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from helpers import write_class_folder

    root = tmp_path_factory.mktemp("data")
    write_class_folder(root)
    out = tmp_path_factory.mktemp("run") / "bundle"
    return root, out, train(_cfg(root), out, progress=False)


def test_bundle_files_and_card(trained):
    _, out, result = trained
    for name in ("model.safetensors", "card.json", "config.yaml", "split.csv", "learning_curves.png",
                 "evaluation/metrics.json", "evaluation/roc.png", "evaluation/confusion_matrix.png",
                 "logs/metrics.csv"):
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    assert card["model"]["architecture"] == "tiny_cnn"
    assert card["classes"] == ["bcc", "mel", "nv"]
    assert card["preprocessing"]["image_size"] == 32
    assert card["training"]["config"]["train"]["epochs"] == 2
    assert card["training"]["epochs_run"] == 2
    assert card["inference"] == {"tta": "none"} and card["validation"]["seen_in_training"] is False
    assert len(card["data"]["fingerprint"]) == 64
    assert {"torch", "timm", "lightning", "python"} <= set(card["versions"])
    assert card["validation"]["balanced_accuracy"] == result.validation["balanced_accuracy"]
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["name"] == "tiny_cnn"
    split = pd.read_csv(out / "split.csv")
    assert set(split["partition"]) == {"train", "val"} and split["sha256"].str.len().eq(64).all()
    val_counts = card["data"]["counts"]["val"]  # 20% of 12 per class, stratified
    assert set(val_counts) == {"bcc", "mel", "nv"} and min(val_counts.values()) >= 2
    assert sum(val_counts.values()) == (split["partition"] == "val").sum()


def test_reloaded_bundle_gives_the_same_probabilities(trained):
    root, out, result = trained
    _, probs = reloaded_matches_saved(out)
    assert np.allclose(probs.sum(1), 1, atol=1e-5)


def test_tampered_weights_are_refused(trained, tmp_path):
    _, out, _ = trained
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("checkpoints", "logs"))
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the card"):
        read_card(copy)


def test_a_finished_run_is_not_overwritten_and_resume_continues(trained, tmp_path):
    root, _, _ = trained
    out = tmp_path / "run"
    train(_cfg(root, epochs=1), out, progress=False)
    with pytest.raises(FileExistsError, match="--resume"):
        train(_cfg(root, epochs=1), out, progress=False)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    cfg["train"]["epochs"] = 3  # as if the run had been interrupted after its first epoch of three
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    result = train(_cfg(root), out, resume=True, progress=False)
    assert result.card.data["training"]["epochs_run"] == 3
    assert list(epoch_table(out / "logs").index) == [1, 2, 3]  # the first run's epoch is kept
    assert (out / "logs" / "metrics.0.csv").is_file()


@pytest.mark.parametrize("options", [
    dict(sampler="balanced", class_weights="balanced", schedule="plateau", label_smoothing=0.1),
    dict(logit_adjustment=1.0, class_weights="none", schedule="inverse_time", optimizer="rmsprop"),
    dict(optimizer="nesterov", schedule="step", l1=1e-5, weight_decay=1e-4, patience=1, monitor="val_loss"),
])
def test_training_options_run(trained, tmp_path, options):
    root, _, _ = trained
    result = train(_cfg(root, **options), tmp_path / "r", progress=False)
    assert 0.0 <= result.validation["balanced_accuracy"] <= 1.0


def test_frozen_stages_stay_frozen_and_the_bundle_reloads(trained, tmp_path):
    root, _, _ = trained
    cfg = _cfg(root)
    cfg.model.name, cfg.model.frozen_stages = "simple_cnn", 2
    out = tmp_path / "frozen"
    result = train(cfg, out, progress=False)
    assert result.card.data["model"]["trainable_parameters"] < result.card.data["model"]["parameters"]
    assert result.card.data["training"]["freeze_schedule"] == {"0": ["stage 3", "top"]}
    predictor = Predictor(out)  # freezing renames nothing: a plain model takes the saved tensors
    stem = predictor.model.features[0][0].weight
    L.seed_everything(cfg.train.seed, verbose=False)  # train() seeds the same way before building the model
    initial = create_model("simple_cnn", 3).features[0][0].weight
    assert torch.equal(stem, initial)  # the frozen stem never moved
    assert torch.equal(predictor.model.features[0][1].running_mean, torch.zeros(32))  # nor did its batch norm
    assert not torch.equal(predictor.model.classifier.weight, create_model("simple_cnn", 3).classifier.weight)
    split = pd.read_csv(out / "split.csv")
    probs, _ = predictor.predict_files(list(split["path"][:3]))
    assert probs.shape == (3, 3)
    saved = pd.read_csv(out / "evaluation" / "predictions.csv").set_index("image_id")
    val = split[split["partition"] == "val"]
    again, _ = predictor.predict_files(list(val["path"]))
    assert np.allclose(again, saved.loc[val["image_id"], [f"p_{c}" for c in predictor.classes]].to_numpy(), atol=1e-5)


def test_logit_adjustment_shifts_the_loss_by_the_log_prior():
    from lesionlens.config import TrainConfig
    from lesionlens.data.images import Preprocessing
    from lesionlens.training.module import Classifier

    prior = torch.tensor([0.9, 0.1])
    module = Classifier(create_model("tiny_cnn", 2), TrainConfig(logit_adjustment=1.0, class_weights="none"),
                        Preprocessing(), None, steps_per_epoch=1, class_prior=prior)
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    targets = torch.tensor([0, 1])
    expected = torch.nn.functional.cross_entropy(logits + prior.log(), targets)
    assert torch.isclose(module._loss(logits, targets), expected)
    # a rare class must win by more than its log-prior handicap: the decision the loss trains is balanced
    assert module._loss(torch.tensor([[0.0, 0.0]]), torch.tensor([1])) > module._loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))


def test_a_runs_split_file_trains_again_on_the_same_split(trained, tmp_path):
    _, out, _ = trained
    again = train(_cfg(out / "split.csv", epochs=1), tmp_path / "again", progress=False)
    first = pd.read_csv(out / "split.csv").set_index("sha256")["partition"]
    second = pd.read_csv(again.bundle / "split.csv").set_index("sha256")["partition"]
    assert second.sort_index().equals(first.sort_index())


def test_last_checkpoint_is_the_last_epoch_even_without_improvement(trained, tmp_path):
    """--resume must continue after the last finished epoch, not after the best one. With a zero
    learning rate only batch-norm statistics move; in this seeded run the best validation accuracy
    is an earlier epoch's, and last.ckpt must still be the third (Lightning's own save_last kept
    the best epoch's state there)."""
    root, _, _ = trained
    out = tmp_path / "flat"
    train(_cfg(root, epochs=3, lr=0.0, monitor="val_accuracy"), out, progress=False)
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    best = torch.load(out / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["epoch"] < 2  # what makes this run a test of the point
    assert last["epoch"] == 2


def test_a_run_cut_short_by_its_time_limit_says_so(trained, tmp_path, capsys):
    """Lightning's timer stops inside an epoch and still counts that epoch; the card and the summary
    must say the run was cut short, and a run that finished must not."""
    from lesionlens.training.curves import cut_epoch
    from lesionlens.training.summary import run_line

    root, _, finished = trained
    result = train(_cfg(root, epochs=3, max_minutes=1e-6), tmp_path / "cut", progress=True)
    epoch_line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch 1/3"))
    assert "time limit)" in epoch_line and "(its first " in epoch_line  # its training loss is over a few steps
    assert result.card.training.stopped_by_time and result.card.training.epochs_run < 3
    assert "cut short by the time limit (train.max_minutes 1e-06)" in run_line(result)
    assert json.loads((tmp_path / "cut" / "card.json").read_text())["training"]["stopped_by_time"] is True
    assert not finished.card.training.stopped_by_time and "cut short" not in run_line(finished)
    # the log says how much of the cut epoch ran, which the learning curves draw apart
    assert cut_epoch(epoch_table(tmp_path / "cut" / "logs"))[1] < 1
    assert (epoch_table(finished.bundle / "logs")["train_epoch_fraction"] == 1).all()


def test_an_early_stopped_run_says_so(trained, tmp_path):
    """With a zero learning rate the validation accuracy stops improving by the third epoch (see
    test_last_checkpoint_is_the_last_epoch_even_without_improvement), so patience 1 ends a 5-epoch
    run early; the summary must say why it trained fewer."""
    from lesionlens.training.summary import run_line

    root, _, finished = trained
    result = train(_cfg(root, epochs=5, lr=0.0, monitor="val_accuracy", patience=1), tmp_path / "early",
                   progress=False)
    t = result.card.training
    assert t.stopped_early and not t.stopped_by_time and t.epochs_run < 5
    assert (f"trained {t.epochs_run} of 5 epochs in {t.fit_time_s / 60:.1f} min, stopped early: "
            f"1 epoch(s) without a better val_accuracy (train.patience)") in run_line(result)
    assert not finished.card.training.stopped_early and "stopped early" not in run_line(finished)


def test_train_on_val_trains_on_every_image_and_keeps_the_last_epoch(trained, tmp_path, monkeypatch):
    """The ISIC challenge protocol: fit on training + validation images. No epoch can be chosen on
    images the model was trained on, so the last one is kept (in this seeded lr-0 run the best
    validation accuracy is an earlier epoch's, see
    test_last_checkpoint_is_the_last_epoch_even_without_improvement), and the card says the
    validation figures are not held out."""
    root, _, _ = trained
    out = tmp_path / "all"
    cfg = _cfg(root, epochs=3, lr=0.0, monitor="val_accuracy")
    cfg.data.train_on_val = True
    drawn = []  # every drawing of learning_curves.png, during and after the run, labels val as trained on
    figure = curves.learning_curves_figure

    def spy(df, monitor=None, title="", val_trained_on=False):
        drawn.append(val_trained_on)
        return figure(df, monitor, title, val_trained_on)

    monkeypatch.setattr(curves, "learning_curves_figure", spy)
    result = train(cfg, out, progress=False)
    assert len(drawn) >= 3 and all(v is True for v in drawn), drawn
    split = pd.read_csv(out / "split.csv")
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3 * (len(split) // 8)  # every image, train and val, in each epoch
    kept = {k.removeprefix("model."): v for k, v in last["state_dict"].items()}
    reloaded = Predictor(out).model.state_dict()
    assert all(torch.equal(reloaded[k], kept[k]) for k in reloaded)
    assert result.card.data["training"]["best_epoch"] == 3  # epochs count from 1, as in the log
    assert result.card.training.best_score is None  # no score is claimed on images it trained on
    assert result.card.kept_epoch == "last epoch kept (3); the validation images were trained on too"
    assert result.card.data["validation"]["seen_in_training"] is True
    # its thresholds were chosen on images it trained on: unvalidated, no sensitivity quoted
    points = result.card.operating_points
    assert points and all(not p.validated and p.validation_sensitivity is None for p in points.values())
    assert all("UNVALIDATED" in line for line in result.card.rule.describe()[1:])
    assert result.card.trained_partitions == ("train", "val")
    from lesionlens.evaluation.bundles import evaluate_bundle
    from lesionlens.quality.leakage import LeakageError

    with pytest.raises(LeakageError, match="training images"):  # its validation images are training images
        evaluate_bundle(result.card, root, tmp_path / "ev", split="own-val", progress=False)

    cfg.train.patience = 2
    with pytest.raises(ValueError, match="train_on_val"):
        train(cfg, tmp_path / "refused", progress=False)


def test_a_split_file_written_from_a_relative_data_path_reads_back_anywhere(trained, tmp_path, monkeypatch):
    """Trained with ``--data ../x`` from one folder, the bundle's split.csv must still name the images
    when read from elsewhere (a CSV's relative paths are taken relative to the CSV's own folder)."""
    root, _, _ = trained
    monkeypatch.chdir(root.parent)
    out = tmp_path / "relative"
    train(_cfg(root.name, epochs=1), out, progress=False)
    paths = pd.read_csv(out / "split.csv")["path"]
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    monkeypatch.chdir(tmp_path)
    train(_cfg(out / "split.csv", epochs=1), tmp_path / "again", progress=False)


def test_gradient_clipping_reaches_the_trainer(trained, tmp_path):
    from lesionlens.training.loop import build_trainer

    root, _, _ = trained
    assert build_trainer(_cfg(root), tmp_path, 4, False, False)[0].gradient_clip_val is None  # off by default
    clipped, _ = build_trainer(_cfg(root, gradient_clip=0.5), tmp_path, 4, False, False)
    assert clipped.gradient_clip_val == 0.5 and clipped.gradient_clip_algorithm == "norm"
    result = train(_cfg(root, gradient_clip=0.5), tmp_path / "r", progress=False)
    assert result.card.training.config["train"]["gradient_clip"] == 0.5


def test_split_seed_keeps_the_split_while_the_training_seed_changes(trained, tmp_path):
    """A recipe's spread over seeds is measured on one validation set: --split-seed fixes the split,
    --seed still changes the initialisation and the batches (and, alone, the split too)."""
    root, _, _ = trained
    runs = {}
    for name, seed, split_seed in (("a", 0, 0), ("b", 1, 0), ("c", 1, None)):
        cfg = _cfg(root, epochs=1, seed=seed)
        cfg.data.split_seed = split_seed
        result = train(cfg, tmp_path / name, progress=False)
        runs[name] = (pd.read_csv(tmp_path / name / "split.csv").sort_values("path"),
                      Predictor(tmp_path / name).model.state_dict(), result.card.dataset)
    assert runs["a"][0]["partition"].tolist() == runs["b"][0]["partition"].tolist()
    assert runs["b"][0]["partition"].tolist() != runs["c"][0]["partition"].tolist()
    assert any(not torch.equal(runs["a"][1][k], runs["b"][1][k]) for k in runs["a"][1])
    assert [r[2].split_seed for r in runs.values()] == [0, 0, 1]
