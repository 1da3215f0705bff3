"""Reading NIfTI volumes and bringing them onto the network's grid: orientation, spacing, size,
intensities, masks, and a clear error naming the file for each kind of bad input."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from lesionlens.data.volumes import (
    Volume,
    VolumeError,
    VolumePreprocessing,
    is_volume_path,
    normalise,
    preprocess_pair,
    preprocess_volume,
    read_mask_volume,
    read_volume,
)


def write_nifti(path, array, spacing=(1.0, 1.0, 1.0), affine=None):
    affine = np.diag([*spacing, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
    return path


def ball(shape, spacing, radius_mm, centre_mm=None):
    """1 inside a ball of ``radius_mm`` around the centre of the field of view (physical units)."""
    grids = np.meshgrid(*[(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing)], indexing="ij")
    centre = centre_mm or [n * s / 2 for n, s in zip(shape, spacing)]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return (r2 <= radius_mm ** 2).astype(np.float32)


def test_reads_voxels_and_spacing_as_float32(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = write_nifti(tmp_path / "v.nii.gz", data, spacing=(0.8, 1.2, 2.5))
    volume = read_volume(path)
    assert volume.array.dtype == np.float32 and volume.array.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.array, data)
    assert volume.spacing == pytest.approx((0.8, 1.2, 2.5))
    assert volume.extent_mm == pytest.approx((3.2, 6.0, 15.0))
    assert is_volume_path(path) and is_volume_path("A.NII") and not is_volume_path("a.png")


def test_volumes_are_turned_to_one_orientation(tmp_path):
    """A file stored with its first axis running right-to-left reads like one stored left-to-right."""
    data = np.random.default_rng(0).normal(size=(4, 5, 6)).astype(np.float32)
    write_nifti(tmp_path / "ras.nii", data)
    flipped = np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped[0, 3] = 3.0  # voxel 3 of the flipped file is where voxel 0 of the other is
    write_nifti(tmp_path / "las.nii", data[::-1], affine=flipped)
    np.testing.assert_allclose(read_volume(tmp_path / "las.nii").array, read_volume(tmp_path / "ras.nii").array)


def test_a_single_channel_4d_volume_is_squeezed(tmp_path):
    data = np.ones((4, 5, 6, 1), np.float32)
    assert read_volume(write_nifti(tmp_path / "c1.nii.gz", data)).array.shape == (4, 5, 6)


@pytest.mark.parametrize("shape, problem", [
    ((8, 8), "2D image"),
    ((4, 5, 6, 3), "several channels"),
    ((8, 8, 1), "single slice"),
])
def test_wrong_dimensionality_is_refused_naming_the_file(tmp_path, shape, problem):
    path = write_nifti(tmp_path / "bad.nii.gz", np.ones(shape, np.float32))
    with pytest.raises(VolumeError, match=problem) as e:
        read_volume(path)
    assert str(path) in str(e.value)


def test_nan_and_infinite_voxels_are_refused_and_counted(tmp_path):
    data = np.zeros((4, 4, 4), np.float32)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = np.nan, np.nan, np.inf
    path = write_nifti(tmp_path / "nan.nii.gz", data)
    with pytest.raises(VolumeError, match=r"3 of 64 voxels are not finite \(2 NaN, 1 infinite\)") as e:
        read_volume(path)
    assert str(path) in str(e.value)


def test_corrupt_and_truncated_files_are_refused_naming_the_file(tmp_path):
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    good = write_nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).normal(size=(20, 20, 20)))
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    raw = write_nifti(tmp_path / "raw.nii", np.ones((20, 20, 20), np.float32))
    short = tmp_path / "short.nii"
    short.write_bytes(raw.read_bytes()[:1000])
    for path in (junk, truncated, short):
        with pytest.raises(VolumeError, match="cannot read the NIfTI file") as e:
            read_volume(path)
        assert str(path) in str(e.value)
    with pytest.raises(VolumeError, match="no such file"):
        read_volume(tmp_path / "absent.nii.gz")


def test_preprocessing_round_trips_through_the_card_json():
    pre = VolumePreprocessing((24, 32, 16), (1.0, 1.5, 2.0), "percentile", (1.0, 99.0))
    assert VolumePreprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    resize_only = VolumePreprocessing(spacing=None)
    assert VolumePreprocessing.from_dict(resize_only.to_dict()) == resize_only
    with pytest.raises(ValueError, match="not a volume preprocessing"):
        VolumePreprocessing.from_dict({"image_size": 224})
    with pytest.raises(ValueError, match="unknown volume normalisation"):
        VolumePreprocessing(normalisation="minmax")
    with pytest.raises(ValueError, match="spacing"):
        VolumePreprocessing(spacing=(1.0, 0.0, 1.0))


def test_normalisations():
    rng = np.random.default_rng(0)
    x = rng.normal(100, 20, (10, 10, 10)).astype(np.float32)
    z = normalise(x, VolumePreprocessing(normalisation="zscore"))
    assert abs(z.mean()) < 1e-4 and z.std() == pytest.approx(1.0, abs=1e-4)
    x[:5] = 0
    nz = normalise(x, VolumePreprocessing(normalisation="zscore_nonzero"))
    assert (nz[:5] == 0).all() and abs(nz[5:].mean()) < 1e-4
    x[0, 0, 0] = 1e6  # one extreme voxel does not squash the rest
    p = normalise(x, VolumePreprocessing(normalisation="percentile"))
    assert p.min() == 0 and p.max() == 1 and np.median(p[5:]) > 0.3


def test_the_same_object_at_different_spacings_looks_the_same_after_preprocessing(tmp_path):
    """A 20 mm ball in a 48 mm field of view, sampled at 1 mm and at 1.6 x 0.8 x 1.2 mm: at a common
    1.5 mm spacing and 32^3 grid the two inputs nearly coincide, and the ball keeps its size."""
    pre = VolumePreprocessing((32, 32, 32), (1.5, 1.5, 1.5), "percentile")
    fine = write_nifti(tmp_path / "fine.nii.gz", 100 + 200 * ball((48, 48, 48), (1, 1, 1), 10), (1, 1, 1))
    spacing = (1.6, 0.8, 1.2)
    shape = tuple(round(48 / s) for s in spacing)
    odd = write_nifti(tmp_path / "odd.nii.gz", 100 + 200 * ball(shape, spacing, 10), spacing)
    a, b = preprocess_volume(fine, pre), preprocess_volume(odd, pre)
    assert a.shape == b.shape == (32, 32, 32) and a.dtype == np.float32
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    ball_voxels = 4 / 3 * np.pi * 10 ** 3 / 1.5 ** 3
    assert (a > 0.5).sum() == pytest.approx(ball_voxels, rel=0.1)
    assert (b > 0.5).sum() == pytest.approx(ball_voxels, rel=0.1)


def test_a_small_field_of_view_is_padded_with_background_and_a_large_one_cropped(tmp_path):
    pre = VolumePreprocessing((16, 16, 16), (1.0, 1.0, 1.0), "zscore")
    small = preprocess_volume(Volume(np.random.default_rng(0).normal(size=(8, 8, 8)).astype(np.float32),
                                     (1.0, 1.0, 1.0)), pre)
    assert small.shape == (16, 16, 16)
    assert (small[:4] == small.min()).all() and small[4:12, 4:12, 4:12].std() > 0.5
    large = np.zeros((40, 40, 40), np.float32)
    large[20, 20, 20] = 1
    cropped = preprocess_volume(Volume(large, (1.0, 1.0, 1.0)), pre)
    assert np.unravel_index(cropped.argmax(), cropped.shape) == (8, 8, 8)


def test_without_a_spacing_the_whole_volume_is_resized():
    pre = VolumePreprocessing((8, 8, 8), None, "percentile")
    out = preprocess_volume(Volume(np.random.default_rng(0).random((20, 10, 40)).astype(np.float32),
                                   (1.0, 2.0, 0.5)), pre)
    assert out.shape == (8, 8, 8)


def test_masks_follow_their_volume_voxel_for_voxel_and_stay_binary(tmp_path):
    spacing = (1.6, 0.8, 1.2)
    shape = tuple(round(48 / s) for s in spacing)
    inside = ball(shape, spacing, 10)
    image = write_nifti(tmp_path / "v.nii.gz", 100 + 200 * inside, spacing)
    mask = write_nifti(tmp_path / "m.nii.gz", inside.astype(np.uint8), spacing)
    pre = VolumePreprocessing((32, 32, 32), (1.5, 1.5, 1.5), "percentile")
    x, m = preprocess_pair(image, mask, pre)
    assert m.dtype == bool and m.shape == x.shape == (32, 32, 32)
    assert ((x > 0.5) == m).mean() > 0.99


def test_bad_masks_are_refused_naming_the_mask(tmp_path):
    volume = read_volume(write_nifti(tmp_path / "v.nii.gz", np.ones((6, 6, 6), np.float32)))
    labels = np.zeros((6, 6, 6), np.uint8)
    labels[1, 1, 1] = 2
    for name, data, spacing, problem in [
        ("shape.nii.gz", np.zeros((6, 6, 5), np.uint8), (1, 1, 1), "mask of shape"),
        ("labels.nii.gz", labels, (1, 1, 1), "only 0 and 1, found 0, 2"),
        ("spacing.nii.gz", np.zeros((6, 6, 6), np.uint8), (2, 1, 1), "voxel size"),
    ]:
        path = write_nifti(tmp_path / name, data, spacing)
        with pytest.raises(VolumeError, match=problem) as e:
            read_mask_volume(path, volume)
        assert str(path) in str(e.value)
