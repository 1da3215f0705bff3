"""Segment, then classify: the lesion box's geometry, and a classifier trained on crops that
carries its segmenter (tiny U-Net of the session's fixture), moves with it and refuses a changed one."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import lesion_image, save

from lesionlens.bundle.card import BundleError, read_card
from lesionlens.config import ConfigError, load_config
from lesionlens.data.crop import crop_box, crop_to_lesion
from lesionlens.data.images import LesionCrop, Preprocessing, load_rgb, preprocess_image
from lesionlens.inference import Predictor
from lesionlens.training.fit import train


def test_the_box_is_grown_squared_and_kept_inside_the_image():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 3:7] = True  # 4 wide, 2 high in the view
    # squash of a 100 x 50 image: a view pixel is 10 x 5 image pixels -> lesion x 30..70, y 10..20
    assert crop_box(mask, (100, 50), Preprocessing(10), 0.0) == (30, 0, 70, 40)  # squared to 40, shifted down into view
    # a margin of 25% of the 40-px side on every side: 60 px, centred on x = 50, inside the 50-px height
    assert crop_box(mask, (100, 50), Preprocessing(10), 0.25) == (20, 0, 80, 50)
    # "crop": the view is the centre 50 x 50 square, so a view pixel is 5 x 5 from x = 25
    assert crop_box(mask, (100, 50), Preprocessing(10, resize="crop"), 0.0) == (40, 5, 60, 25)
    assert crop_box(np.zeros((10, 10), bool), (100, 50), Preprocessing(10), 0.1) is None


@pytest.fixture(scope="module")
def cropping_classifier(segmentation_bundle, tmp_path_factory) -> Path:
    """tiny_cnn trained for one epoch on lesions whose class is their tone, each image cut to the
    lesion that the session's segmentation fixture finds."""
    root = tmp_path_factory.mktemp("crop")
    for i in range(24):
        image, mask = lesion_image(100 + i, 64)
        label = "light" if i % 2 else "dark"
        if label == "light":
            image = np.where(mask[..., None], np.clip(image.astype(int) + 70, 0, 255), image).astype(np.uint8)
        save(image, root / "data" / label / f"case_{i:03d}.jpg", quality=95)
    cfg = load_config(overrides={
        "data.path": str(root / "data"), "data.num_workers": 0, "data.cache_dir": str(root / "cache"),
        "model.name": "tiny_cnn", "model.pretrained": False, "train.strategy": "scratch", "model.image_size": 32,
        "train.epochs": 1, "train.batch_size": 8, "model.lesion_crop": str(segmentation_bundle),
        "model.crop_margin": 0.1})
    train(cfg, root / "bundle", progress=False)
    return root / "bundle"


def test_the_classifier_carries_its_segmenter_and_names_it_relative_to_itself(cropping_classifier):
    assert (cropping_classifier / "segmenter" / "card.json").is_file()
    assert (cropping_classifier / "segmenter" / "model.onnx").is_file()
    raw = json.loads((cropping_classifier / "card.json").read_text())["preprocessing"]["lesion_crop"]
    assert raw["segmenter"] == "segmenter" and raw["margin"] == 0.1 and len(raw["digest"]) == 64
    crop = read_card(cropping_classifier).preprocessing.lesion_crop
    assert Path(crop.segmenter) == cropping_classifier / "segmenter"


def test_a_crop_brings_the_lesion_closer(cropping_classifier, tmp_path):
    pre = read_card(cropping_classifier).preprocessing
    whole = dataclasses.replace(pre, lesion_crop=None)
    shares = []
    for seed in range(6):
        image, _ = lesion_image(500 + seed, 96)
        path = save(image, tmp_path / f"p{seed}.png")
        cropped, full = preprocess_image(path, pre), preprocess_image(path, whole)
        dark = [(view.astype(int).sum(axis=2) < 400).mean() for view in (cropped, full)]  # lesion pixels are dark
        shares.append(dark)
    cropped_share, full_share = np.mean(shares, axis=0)
    assert cropped_share > 1.5 * full_share  # the lesion fills more of what the classifier sees


def test_a_moved_bundle_still_crops_and_predicts(cropping_classifier, tmp_path):
    moved = Path(shutil.copytree(cropping_classifier, tmp_path / "elsewhere"))
    image, _ = lesion_image(7, 64)
    files = [save(image, tmp_path / "one.jpg"), save(image, tmp_path / "two.png")]
    probabilities, failures = Predictor(moved).predict_files(files)
    assert not failures and probabilities.shape == (2, 2)
    assert Path(read_card(moved).preprocessing.lesion_crop.segmenter) == moved / "segmenter"


def test_a_damaged_segmenter_is_refused(cropping_classifier, tmp_path):
    copy = Path(shutil.copytree(cropping_classifier, tmp_path / "damaged"))
    onnx = copy / "segmenter" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10] + b"0123456789")
    image, _ = lesion_image(8, 64)
    with pytest.raises(BundleError, match="sha256"):
        preprocess_image(save(image, tmp_path / "x.jpg"), read_card(copy).preprocessing)


def test_a_segmenter_that_is_not_the_trained_one_is_refused(cropping_classifier, tmp_path):
    crop = read_card(cropping_classifier).preprocessing.lesion_crop
    other = LesionCrop(crop.segmenter, crop.margin, "0" * 64)
    image, _ = lesion_image(9, 64)
    with pytest.raises(ValueError, match="not the one the classifier was trained with"):
        crop_to_lesion(load_rgb(save(image, tmp_path / "y.jpg")), other)


def test_an_image_without_a_lesion_is_classified_whole_and_named(cropping_classifier, tmp_path, caplog):
    skin = np.full((64, 64, 3), (205, 160, 135), np.uint8)
    path = save(skin, tmp_path / "plain_skin.png")
    crop = read_card(cropping_classifier).preprocessing.lesion_crop
    with caplog.at_level(logging.WARNING, logger="lesionlens.data.crop"):
        out = crop_to_lesion(load_rgb(path), crop, str(path))
    assert out.size == (64, 64)
    assert "plain_skin.png: the segmenter found no lesion" in caplog.text


def test_crop_settings_that_cannot_work_are_refused(exported_bundle, tmp_path):
    cfg = load_config(overrides={"data.path": str(tmp_path), "model.lesion_crop": str(exported_bundle),
                                 "train.task": "segmentation"})
    with pytest.raises(ConfigError, match="lesion_crop"):
        train(cfg, tmp_path / "seg", progress=False)
    from lesionlens.data.crop import bundle_segmenter

    with pytest.raises(ValueError, match="a classification bundle"):
        bundle_segmenter(exported_bundle, tmp_path / "b", 0.1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        bundle_segmenter(exported_bundle, tmp_path / "b", 1.5)


def test_the_server_crops_the_upload_as_predict_does(cropping_classifier, tmp_path):
    from fastapi.testclient import TestClient

    from lesionlens.export.onnx import export_bundle
    from lesionlens.serving.app import create_app

    bundle = Path(shutil.copytree(cropping_classifier, tmp_path / "served"))
    export_bundle(bundle)
    image, _ = lesion_image(11, 80)
    path = save(image, tmp_path / "upload.jpg", quality=95)
    expected, _ = Predictor(bundle).predict_files([path])
    with TestClient(create_app(bundle)) as client:
        r = client.post("/v1/predict", files={"file": ("upload.jpg", path.read_bytes(), "image/jpeg")})
    assert r.status_code == 200, r.text
    served = r.json()["probabilities"]
    assert np.allclose([served[c] for c in read_card(bundle).classes], expected[0], atol=1e-4)


def test_a_mask_is_cut_to_the_box_its_image_is_cut_to(cropping_classifier, tmp_path):
    from lesionlens.data.masks import preprocess_mask

    pre = read_card(cropping_classifier).preprocessing
    overlaps = []
    for seed in range(4):
        image, mask = lesion_image(700 + seed, 96)
        path = save(image, tmp_path / f"m{seed}.png")
        view, cut = preprocess_image(path, pre), preprocess_mask(mask, pre, path)
        dark = view.astype(int).sum(axis=2) < 400
        overlaps.append((dark & cut).sum() / (dark | cut).sum())
    assert np.mean(overlaps) > 0.8  # the lesion in the cropped view is where the cropped mask says
    with pytest.raises(ValueError, match="needs its image"):
        preprocess_mask(mask, pre)
