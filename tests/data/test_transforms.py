"""Augmentation, the cached dataset, class weights and the balanced sampler."""

from __future__ import annotations

import numpy as np
import torch

from lesionlens.config import AugmentConfig
from lesionlens.data.dataset import CachedImages, balanced_sampler, class_weights
from lesionlens.data.transforms import train_transform


def test_augmentation_keeps_shape_and_dtype_and_changes_pixels():
    torch.manual_seed(0)
    aug = train_transform(AugmentConfig(hue=0.05))
    x = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    outs = [aug(x) for _ in range(4)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    assert any(not torch.equal(o, x) for o in outs)


def test_every_augmentation_can_be_switched_off():
    aug = train_transform(AugmentConfig(hflip=0, vflip=0, rotation=0, translate=0, zoom=(1.0, 1.0),
                                        brightness=0, contrast=0, saturation=0, hue=0))
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    assert torch.equal(aug(x), x)


def test_cached_images_reads_rows_of_the_array():
    array = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    ds = CachedImages(array, rows=np.array([3, 1]), targets=np.array([0, 1]), transform=lambda t: t)
    image, target = ds[0]
    assert image.shape == (3, 2, 2) and target == 0
    assert torch.equal(image, torch.from_numpy(array[3]).permute(2, 0, 1))


def test_class_weights_keep_the_mean_loss_scale():
    targets = np.array([0] * 90 + [1] * 10)
    for mode in ("balanced", "sqrt"):
        w = class_weights(targets, 2, mode).numpy()
        assert w[1] > w[0]
        assert np.isclose((w[targets]).mean(), 1.0)
    balanced = class_weights(targets, 2, "balanced").numpy()
    assert np.isclose(balanced[1] / balanced[0], 9.0)
    sqrt = class_weights(targets, 2, "sqrt").numpy()
    assert np.isclose(sqrt[1] / sqrt[0], 3.0)
    assert class_weights(targets, 2, "none") is None


def test_balanced_sampler_draws_classes_equally():
    targets = np.array([0] * 950 + [1] * 50)
    drawn = targets[list(balanced_sampler(targets, seed=0))]
    assert len(drawn) == 1000
    assert 0.4 < drawn.mean() < 0.6
