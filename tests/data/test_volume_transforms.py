"""3D augmentation: seeded, applied to a volume and its mask together, masks kept binary; the dataset
that serves augmented volumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataclasses import replace

from lesionlens.data.volume_dataset import Volumes
from lesionlens.data.volume_transforms import NO_AUGMENT, VolumeAugment, apply, volume_transform


def object_volume(seed=0, shape=(16, 16, 16)):
    """An off-centre box of 1 in noise-free background 0, and its mask: every change is visible."""
    rng = np.random.default_rng(seed)
    x = np.zeros(shape, np.float32)
    x[2:9, 3:12, 5:8] = 1.0
    x += rng.uniform(0, 0.01, shape).astype(np.float32)  # no two voxels alike
    return x, (x > 0.5)


def test_the_same_seed_gives_the_same_augmentation_and_another_seed_another():
    x, m = object_volume()
    aug = VolumeAugment()
    draws = [apply(volume_transform(aug, seed, with_mask=True), x, m) for seed in (1, 1, 2)]
    torch.testing.assert_close(draws[0][0], draws[1][0])
    assert torch.equal(draws[0][1], draws[1][1])
    runs = [[apply(t, x)[0] for _ in range(4)] for t in (volume_transform(aug, 1), volume_transform(aug, 2))]
    assert any(not torch.allclose(a, b) for a, b in zip(*runs))


def test_geometry_moves_the_mask_with_the_volume_and_keeps_it_binary():
    """Flips, quarter turns and the affine warp, no intensity change: the warped volume thresholded
    is the warped mask, voxel for voxel (but for a sliver of interpolated border)."""
    x, m = object_volume()
    geometric = replace(VolumeAugment(), flip=0.5, quarter_turn=0.5, affine=1.0, rotate_degrees=15,
                        intensity=0.0, noise=0.0)
    transform = volume_transform(geometric, 0, with_mask=True)
    moved = 0
    for _ in range(6):
        xa, ma = apply(transform, x, m)
        assert xa.shape == ma.shape == (1, 16, 16, 16)
        assert xa.dtype == torch.float32 and ma.dtype == torch.uint8
        assert set(ma.unique().tolist()) <= {0, 1}
        assert ((xa > 0.5).to(torch.uint8) == ma).float().mean() > 0.97
        moved += not torch.equal(ma[0].bool(), torch.from_numpy(m))
    assert moved >= 4


def test_a_flip_alone_is_an_exact_mirror():
    x, m = object_volume()
    flip_first = replace(NO_AUGMENT, flip=1.0)
    xa, ma = apply(volume_transform(flip_first, 0, with_mask=True), x, m)
    np.testing.assert_array_equal(xa[0].numpy(), x[::-1, ::-1, ::-1])  # every axis flipped with p=1
    np.testing.assert_array_equal(ma[0].numpy().astype(bool), m[::-1, ::-1, ::-1])


def test_intensity_changes_touch_the_volume_not_the_mask():
    x, m = object_volume()
    loud = replace(NO_AUGMENT, intensity=1.0, intensity_scale=0.3, intensity_shift=0.3, noise=1.0, noise_std=0.2)
    xa, ma = apply(volume_transform(loud, 3, with_mask=True), x, m)
    assert torch.equal(ma[0].bool(), torch.from_numpy(m))
    assert not torch.allclose(xa[0], torch.from_numpy(x))


def test_no_augmentation_leaves_the_volume_unchanged():
    x, m = object_volume()
    xa, ma = apply(volume_transform(NO_AUGMENT, 0, with_mask=True), x, m)
    np.testing.assert_array_equal(xa[0].numpy(), x)


def test_probabilities_are_checked():
    with pytest.raises(ValueError, match="flip is a probability"):
        VolumeAugment(flip=1.5)


def test_the_dataset_serves_volumes_masks_and_targets_in_the_training_layouts():
    array = np.stack([object_volume(s)[0] for s in range(3)])
    masks = array > 0.5
    plain = Volumes(array, np.array([2, 0]), np.array([1, 0]))
    x, target = plain[0]
    assert x.shape == (1, 16, 16, 16) and target == 1
    np.testing.assert_array_equal(x[0].numpy(), array[2])
    paired = Volumes(array, np.array([0, 1, 2]), np.array([0, 0, 1]), masks[[0, 1, 2]], VolumeAugment(), seed=0)
    x, mask, target = paired[2]
    assert x.shape == mask.shape == (1, 16, 16, 16) and mask.dtype == torch.uint8 and target == 1
    batch = next(iter(torch.utils.data.DataLoader(paired, batch_size=3)))
    assert [tuple(t.shape) for t in batch] == [(3, 1, 16, 16, 16), (3, 1, 16, 16, 16), (3,)]
    with pytest.raises(ValueError, match="2 volumes, 1 targets"):
        Volumes(array, np.array([0, 1]), np.array([0]))
