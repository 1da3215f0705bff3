"""Segmentation and multi-task training end to end on generated lesions: the bundle, its card, the
evaluation, reloading, the CLI, and the settings a segmentation run refuses."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from helpers import lesion_image, save, save_mask, write_lesion_pairs

from lesionlens.bundle.card import read_card
from lesionlens.config import ConfigError, load_config
from lesionlens.data.images import preprocess_image
from lesionlens.data.masks import preprocess_mask, read_mask
from lesionlens.evaluation.mask_ops import postprocess_mask
from lesionlens.inference import load_model, predict_mask_probabilities
from lesionlens.training.fit import train


def _cfg(data, task="segmentation", **settings):
    overrides = {"data.path": str(data), "train.task": task, "model.name": "tiny_cnn", "model.pretrained": False,
                 "train.strategy": "scratch", "model.image_size": 32, "train.epochs": 6, "train.batch_size": 8,
                 "train.warmup_epochs": 0.0, "train.lr": 0.01, "segment.decoder_width": 16,
                 "augment.rotation": 0.0, "augment.zoom": [1.0, 1.0]}
    overrides.update(settings)
    return load_config(overrides=overrides)


@pytest.fixture(scope="module")
def segmented(tmp_path_factory):
    root = write_lesion_pairs(tmp_path_factory.mktemp("pairs"), n=48, size=48)
    out = tmp_path_factory.mktemp("run") / "bundle"
    return root, out, train(_cfg(root), out, progress=False)


def test_segmentation_bundle_learns_the_lesions_and_says_how_well(segmented):
    root, out, result = segmented
    card = read_card(out)
    assert card.task == "segmentation" and card.training.monitor == "val_jaccard"
    seg = card.segmentation
    assert (seg.loss, seg.upsample, seg.decoder_width, seg.threshold) == ("ce_dice", "resize", 16, 0.5)
    jaccard = seg.validation["mean_jaccard"]
    assert jaccard["estimate"] > 0.7, jaccard  # dark ellipses on skin: easy, but only after learning
    assert jaccard["low"] <= jaccard["estimate"] <= jaccard["high"]
    assert result.segmentation.jaccard.mean() == pytest.approx(jaccard["estimate"])
    assert seg.validation["counts"]["images"] == len(result.segmentation.image_ids)
    for name in ("segmentation_html", "segmentation_worst_masks", "segmentation_jaccard_histogram"):
        assert card.file(name) is not None, name
    split = pd.read_csv(out / "split.csv")
    assert (split["partition"] == "val").sum() == result.segmentation.truth.shape[0]


def test_reloaded_bundle_gives_the_evaluated_masks(segmented):
    root, out, result = segmented
    card = read_card(out)
    model = load_model(card)
    ev = result.segmentation
    ids = ev.image_ids[:4]
    images = np.stack([preprocess_image(root / "images" / f"{i}.jpg", card.preprocessing) for i in ids])
    predicted = postprocess_mask(predict_mask_probabilities(model, images, card.preprocessing))
    assert np.array_equal(predicted, ev.predicted[:4])
    truth = np.stack([preprocess_mask(read_mask(root / "masks" / f"{i}_mask.png"), card.preprocessing) for i in ids])
    assert np.array_equal(truth, ev.truth[:4])


def test_multitask_csv_run_has_both_heads_and_a_decision_rule(tmp_path):
    rows = []
    for i in range(40):
        image, mask = lesion_image(i, 40)
        label = "dark" if i % 2 else "light"
        if label == "light":  # the class is the lesion's tone: the class head has something to learn
            image = np.where(mask[..., None], np.clip(image.astype(int) + 70, 0, 255), image).astype(np.uint8)
        save(image, tmp_path / "images" / f"c{i}.jpg", quality=95)
        save_mask(mask, tmp_path / "masks" / f"c{i}.png")
        rows.append({"image": f"c{i}", "mask": f"c{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(tmp_path / "cases.csv", index=False)
    out = tmp_path / "bundle"
    result = train(_cfg(tmp_path / "cases.csv", "multitask", **{"train.epochs": 3}), out, progress=False)
    card = read_card(out)
    assert card.task == "multitask" and card.classes == ["dark", "light"]
    assert card.validation.balanced_accuracy is not None and card.calibration is not None
    assert (out / "evaluation" / "metrics.json").is_file() and card.segmentation.validation["mean_jaccard"]["estimate"] > 0
    masks, logits = load_model(card)(__import__("torch").zeros(1, 3, 32, 32))
    assert masks.shape == (1, 1, 32, 32) and logits.shape == (1, 2)
    assert result.evaluation is not None


def test_cli_trains_a_transposed_decoder_with_weighted_bce(tmp_path):
    from lesionlens.cli import main

    root = write_lesion_pairs(tmp_path / "pairs", n=16, size=32)
    out = tmp_path / "bundle"
    code = main(["train", "--task", "segmentation", "--data", str(root), "--out", str(out), "--model", "tiny_cnn",
                 "--no-pretrained", "--strategy", "scratch", "--image-size", "32", "--epochs", "1",
                 "--upsample", "transposed", "--loss", "weighted_bce", "--pos-weight", "3", "--decoder-width", "16",
                 "-q"])
    assert code == 0
    card = json.loads((out / "card.json").read_text())
    assert card["segmentation"]["upsample"] == "transposed" and card["segmentation"]["loss"] == "weighted_bce"
    assert card["training"]["config"]["segment"]["pos_weight"] == 3.0


@pytest.mark.parametrize("setting,message", [
    ({"train.strategy": "shallow", "model.pretrained": True}, "strategy must be one of"),
    ({"model.frozen_stages": 2, "train.strategy": "full"}, "frozen_stages is not supported"),
    ({"train.sampler": "balanced"}, "balanced sampler"),
])
def test_settings_a_segmentation_run_cannot_honour_are_refused(tmp_path, setting, message):
    with pytest.raises(ConfigError, match=message):
        train(_cfg(tmp_path, **setting), tmp_path / "out", progress=False)


def test_a_classification_run_cannot_monitor_jaccard(tmp_path):
    with pytest.raises(ConfigError, match="val_jaccard needs --task segmentation"):
        train(load_config(overrides={"train.monitor": "val_jaccard", "data.path": str(tmp_path)}), tmp_path / "out",
              progress=False)
