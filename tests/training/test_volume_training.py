"""Training on synthetic NIfTI volumes end to end: a 3D classifier and a 3D U-Net reach the issue's
targets on volumes drawn with another seed (accuracy >= 0.95, Dice >= 0.90), their bundles record
the volume preprocessing, and the predictor reads it back.

The synthetic volumes are a functional check, not a benchmark. Settings: 60 training volumes (20 per
class, 48 trained on, 12 validated) and 30 held-out volumes, 24^3 voxels of 2 mm, batch 4, lr 3e-3,
flips and quarter turns; one thread (tiny 3D convolutions gain nothing from a second, and on a
shared machine a second thread spin-waits for a busy core: measured 10-30x slower steps).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from lesionlens.bundle.card import read_card
from lesionlens.config import ConfigError, load_config
from lesionlens.data.synthetic_volumes import write_synthetic_volumes
from lesionlens.data.volume_transforms import NO_AUGMENT
from lesionlens.data.volumes import VolumePreprocessing, preprocess_pair
from lesionlens.evaluation.volume_evaluate import evaluate_volume_bundle
from lesionlens.evaluation.volume_masks import evaluate_volume_masks
from lesionlens.predict_volumes import VolumePredictor
from lesionlens.training.volume_fit import check_volume_run, train_volumes

PRE = VolumePreprocessing((24, 24, 24), (2.0, 2.0, 2.0), "zscore")
GEOMETRIC = replace(NO_AUGMENT, flip=0.5, quarter_turn=0.5)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_volumes")
    return write_synthetic_volumes(root / "train", per_class=20, seed=0), write_synthetic_volumes(
        root / "held_out", per_class=10, seed=1)


def volume_config(table, model: str, epochs: int, **extra):
    return load_config(None, {"data.path": str(table), "model.name": model, "model.pretrained": False,
                              "train.strategy": "scratch", "train.epochs": epochs, "train.batch_size": 4,
                              "train.lr": 3e-3, "model.drop_rate": 0.0, "train.seed": 0, **extra})


@pytest.fixture(scope="module")
def classifier(synthetic, tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("volume_bundles") / "cls"
    return train_volumes(volume_config(synthetic[0], "tiny_cnn3d", 10), folder, PRE, GEOMETRIC, progress=False)


@pytest.fixture(scope="module")
def segmenter(synthetic, tmp_path_factory, one_thread):
    folder = tmp_path_factory.mktemp("volume_bundles") / "seg"
    return train_volumes(volume_config(synthetic[0], "tiny_unet3d", 20, **{"segment.loss": "ce_dice"}), folder,
                         PRE, GEOMETRIC, progress=False)


def test_a_3d_classifier_tells_the_shapes_apart_on_held_out_volumes(synthetic, classifier):
    table, held_out = synthetic
    card = read_card(classifier.bundle)
    assert card.is_volume and card.task == "classification" and card.preprocessing == PRE
    assert card.data["preprocessing"] == {"kind": "volume", "size": [24, 24, 24], "spacing": [2.0, 2.0, 2.0],
                                          "normalisation": "zscore", "percentiles": [0.5, 99.5]}
    assert card.classes == ["multiple", "shell", "solid"] and card.dataset.format == "volumes"
    assert card.dataset.counts["val"] == {"multiple": 4, "shell": 4, "solid": 4}
    assert card.file("split") is not None and (classifier.bundle / "evaluation" / "metrics.json").is_file()
    assert classifier.validation["accuracy"] >= 0.95

    frame = pd.read_csv(held_out)
    predictions = VolumePredictor(classifier.bundle).predict([held_out.parent / p for p in frame["path"]])
    assert np.allclose(predictions.probabilities.sum(1), 1.0, atol=1e-5)
    accuracy = float(np.mean(np.array(predictions.labels) == frame["label"].to_numpy()))
    assert accuracy >= 0.95, accuracy
    # evaluate: the same figure through the bundle's evaluation, and the own validation split by default
    held = evaluate_volume_bundle(classifier.bundle, held_out, resamples=0)
    assert held.what == "all volumes" and held.written.metrics["accuracy"] == pytest.approx(accuracy)
    own = evaluate_volume_bundle(classifier.bundle, table, resamples=0)
    assert own.what == "the bundle's validation split" and own.written.metrics["n_images"] == 12
    with pytest.raises(ValueError, match="48 of the 60 volumes evaluated are cls's training volumes"):
        evaluate_volume_bundle(classifier.bundle, table, split="all", resamples=0)


def test_a_3d_unet_segments_held_out_volumes(synthetic, segmenter):
    table, held_out = synthetic
    card = read_card(segmenter.bundle)
    assert card.task == "segmentation" and card.training.monitor == "val_jaccard"
    assert card.segmentation.validation["dice"] == segmenter.validation["dice"] >= 0.85

    frame = pd.read_csv(held_out)
    predictor = VolumePredictor(segmenter.bundle)
    predictions = predictor.predict([held_out.parent / p for p in frame["path"]])
    truth = np.stack([preprocess_pair(held_out.parent / v, held_out.parent / m, predictor.pre)[1]
                      for v, m in zip(frame["path"], frame["mask"])])
    evaluation = evaluate_volume_masks(truth, predictions.masks, voxel_mm3=predictions.voxel_mm3)
    assert evaluation.dice >= 0.90, evaluation.summary()
    assert evaluate_volume_bundle(segmenter.bundle, held_out).masks.dice == pytest.approx(evaluation.dice)
    # the masks' volumes follow the objects' volumes in mm^3 (the generator's numeric target)
    error = np.abs(predictions.volumes_mm3 - frame["volume_mm3"].to_numpy()) / frame["volume_mm3"].to_numpy()
    assert np.median(error) < 0.15, np.median(error)


def test_the_same_seed_trains_the_same_weights(synthetic, tmp_path, one_thread):
    table, _ = synthetic
    weights = []
    for run in ("a", "b"):
        train_volumes(volume_config(table, "tiny_cnn3d", 1), tmp_path / run, PRE, GEOMETRIC, progress=False)
        from safetensors.torch import load_file

        weights.append(load_file(str(tmp_path / run / "model.safetensors")))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_volume_runs_refuse_what_they_cannot_honour(synthetic):
    table, _ = synthetic
    with pytest.raises(ValueError, match="tiny_cnn is a 2D model for images; training on volumes"):
        check_volume_run(volume_config(table, "tiny_cnn", 1))
    with pytest.raises(ConfigError, match="no pretrained weights"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"model.pretrained": True}))
    with pytest.raises(ConfigError, match="--task segmentation: tiny_cnn3d is a classification model"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"train.task": "segmentation"}))
    with pytest.raises(ConfigError, match="strategy must be one of"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"train.strategy": "features"}))
    with pytest.raises(ConfigError, match="--task multitask is not supported on volumes yet"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"train.task": "multitask"}))
    with pytest.raises(ValueError, match="--target: expected one or more column names"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"train.task": "regression"}))
    with pytest.raises(ConfigError, match="train_on_val is not supported"):
        check_volume_run(volume_config(table, "tiny_cnn3d", 1, **{"data.train_on_val": True}))
