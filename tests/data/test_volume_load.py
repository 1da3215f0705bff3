"""A CSV of NIfTI volumes read into a checked table and preprocessed volumes; bad volumes listed by
CSV line and file, or skipped."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from lesionlens.data.table import DataError
from lesionlens.data.volume_load import is_volume_table, prepare_volumes, read_volume_table
from lesionlens.data.volumes import VolumePreprocessing

PRE = VolumePreprocessing((8, 8, 8), (2.0, 2.0, 2.0), "zscore")


def write(path, array, spacing=(1.0, 1.0, 1.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(array), np.diag([*spacing, 1.0])), str(path))
    return path


@pytest.fixture
def volume_csv(tmp_path):
    """Four good volumes of two classes with masks, and a CSV naming them relative to itself."""
    rng = np.random.default_rng(0)
    lines = ["path,label,mask,group"]
    for i in range(4):
        x = rng.normal(100, 10, (16, 16, 16)).astype(np.float32)
        m = np.zeros((16, 16, 16), np.uint8)
        m[4:12, 4:12, 4:12] = 1
        write(tmp_path / "v" / f"a{i}.nii.gz", x + 100 * m)
        write(tmp_path / "m" / f"a{i}.nii.gz", m)
        lines.append(f"v/a{i}.nii.gz,{'big' if i % 2 else 'small'},m/a{i}.nii.gz,s{i}")
    (tmp_path / "volumes.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "volumes.csv"


def test_a_csv_of_volumes_is_read_and_preprocessed(volume_csv):
    assert is_volume_table(volume_csv)
    table = read_volume_table(volume_csv)
    assert table.format == "volumes" and table.classes == ["big", "small"] and not table.issues
    data = prepare_volumes(table, PRE)
    assert data.volumes.shape == (4, 8, 8, 8) and data.masks is None
    assert data.table.frame["sha256"].notna().all()
    with_masks = prepare_volumes(read_volume_table(volume_csv, masks=True), PRE)
    volumes, masks = with_masks.arrays(np.array([2, 0]))
    assert masks.shape == (2, 8, 8, 8) and masks.dtype == bool
    assert volumes[masks].mean() > volumes[~masks].mean() + 1


def test_a_csv_of_images_is_not_a_volume_table(tmp_path):
    (tmp_path / "images.csv").write_text("path,label\na.jpg,x\n")
    assert not is_volume_table(tmp_path / "images.csv")
    assert not is_volume_table(tmp_path)


def test_bad_volumes_are_listed_by_line_and_file_or_skipped(volume_csv):
    root = volume_csv.parent
    nan = np.zeros((16, 16, 16), np.float32)
    nan[3, 3, 3] = np.nan
    write(root / "v" / "nan.nii.gz", nan)
    write(root / "v" / "flat.nii.gz", np.zeros((16, 16), np.float32))
    (root / "v" / "corrupt.nii.gz").write_bytes(gzip.compress(b"not a volume" * 50))
    with volume_csv.open("a") as f:
        f.write("v/nan.nii.gz,big,m/a0.nii.gz,s5\nv/flat.nii.gz,small,m/a0.nii.gz,s6\n"
                "v/corrupt.nii.gz,big,m/a0.nii.gz,s7\nv/absent.nii.gz,big,m/a0.nii.gz,s8\n")
    with pytest.raises(DataError) as e:
        prepare_volumes(read_volume_table(volume_csv), PRE)
    message = str(e.value)
    assert "4 problem(s)" in message
    assert f"{volume_csv}:6: v/nan.nii.gz: 1 of 4096 voxels are not finite" in message
    assert f"{volume_csv}:7: v/flat.nii.gz: a 2D image" in message
    assert f"{volume_csv}:8: v/corrupt.nii.gz: cannot read the NIfTI file" in message
    assert f"{volume_csv}:9: v/absent.nii.gz: image file not found" in message
    kept = prepare_volumes(read_volume_table(volume_csv), PRE, on_bad_input="skip", report=root / "issues.csv")
    assert len(kept.table) == 4 and kept.volumes.shape[0] == 4
    assert len((root / "issues.csv").read_text().splitlines()) == 5


def test_a_mask_that_does_not_fit_its_volume_is_named(volume_csv):
    root = volume_csv.parent
    write(root / "m" / "small.nii.gz", np.zeros((8, 8, 8), np.uint8))
    write(root / "v" / "a4.nii.gz", np.ones((16, 16, 16), np.float32))
    with volume_csv.open("a") as f:
        f.write("v/a4.nii.gz,big,m/small.nii.gz,s9\n")
    with pytest.raises(DataError, match=r"volumes.csv:6: v/a4.nii.gz: mask .*small.nii.gz: mask of shape \(8, 8, 8\)"):
        prepare_volumes(read_volume_table(volume_csv, masks=True), PRE)
