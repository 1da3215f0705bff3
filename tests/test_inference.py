"""Test-time augmentation: the averaged logits are those of the views, and invariant to them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lesionlens.data.images import Preprocessing
from lesionlens.inference import TTA_VIEWS, predict_logits
from lesionlens.models.registry import create_model


@pytest.fixture(scope="module")
def model_and_images():
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 3, pretrained=False).eval()
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    return model, images, Preprocessing(image_size=32)


def test_flips_average_the_four_mirror_images(model_and_images):
    model, images, pre = model_and_images
    views = [images, images[:, :, ::-1], images[:, ::-1, :], images[:, ::-1, ::-1]]
    expected = np.mean([predict_logits(model, np.ascontiguousarray(v), pre) for v in views], axis=0)
    np.testing.assert_allclose(predict_logits(model, images, pre, tta="flips"), expected, atol=1e-5)


@pytest.mark.parametrize("tta", ["flips", "d4"])
def test_tta_logits_do_not_change_when_the_image_is_mirrored(model_and_images, tta):
    model, images, pre = model_and_images
    mirrored = np.ascontiguousarray(images[:, :, ::-1])
    np.testing.assert_allclose(predict_logits(model, mirrored, pre, tta=tta),
                               predict_logits(model, images, pre, tta=tta), atol=1e-5)


def test_d4_is_invariant_to_quarter_turns_and_plain_is_not(model_and_images):
    model, images, pre = model_and_images
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_allclose(predict_logits(model, turned, pre, tta="d4"),
                               predict_logits(model, images, pre, tta="d4"), atol=1e-5)
    assert not np.allclose(predict_logits(model, turned, pre), predict_logits(model, images, pre), atol=1e-5)
    assert len(TTA_VIEWS["d4"]) == 8 and len(set(TTA_VIEWS["d4"])) == 8


def test_unknown_tta_is_a_clear_error(model_and_images):
    model, images, pre = model_and_images
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rot'"):
        predict_logits(model, images, pre, tta="rot")
