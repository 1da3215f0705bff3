"""The synthetic volumes: classes that are what they say (solid, hollow, several objects), masks and
volumes that agree, a voxel size of their own, and the same files from the same seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from lesionlens.data.synthetic_volumes import SYNTHETIC_CLASSES, draw_volume, main, write_synthetic_volumes
from lesionlens.data.volumes import VolumePreprocessing, preprocess_pair, read_mask_volume, read_volume


@pytest.mark.parametrize("seed", range(4))
def test_each_class_has_its_shape(seed):
    """solid: one object without a cavity; shell: one object around a cavity; multiple: 2-4 objects."""
    for kind in SYNTHETIC_CLASSES:
        v = draw_volume(kind, np.random.default_rng([seed, 7]))
        _, parts = ndimage.label(v.mask)
        cavity = ndimage.binary_fill_holes(v.mask).sum() - v.mask.sum()
        if kind == "solid":
            assert parts == 1 and cavity == 0
        elif kind == "shell":
            assert parts == 1 and cavity > 0.1 * v.mask.sum()
        else:
            assert 2 <= parts <= 4 and cavity == 0
        inside, outside = v.array[v.mask].mean(), v.array[~v.mask].mean()
        assert inside > 1.5 * outside  # the object stands out, under the bias field and noise
        assert v.volume_mm3 == pytest.approx(v.mask.sum() * np.prod(v.spacing))


def test_every_volume_has_its_own_voxel_size_and_the_same_field_of_view():
    volumes = [draw_volume("solid", np.random.default_rng([0, i])) for i in range(5)]
    assert len({v.spacing for v in volumes}) == 5
    for v in volumes:
        assert all(0.9 <= s <= 1.8 for s in v.spacing)
        assert np.array(v.array.shape) * np.array(v.spacing) == pytest.approx([48.0] * 3, abs=1.0)


def test_files_table_and_masks_agree_and_read_back(tmp_path):
    table = write_synthetic_volumes(tmp_path / "syn", per_class=2, seed=3)
    df = pd.read_csv(table)
    assert list(df.columns) == ["path", "label", "mask", "volume_mm3", "group"]
    assert df["label"].tolist() == list(SYNTHETIC_CLASSES) * 2
    for row in df.itertuples():
        volume = read_volume(table.parent / row.path)
        mask = read_mask_volume(table.parent / row.mask, volume)
        assert row.volume_mm3 == pytest.approx(mask.sum() * np.prod(volume.spacing), abs=0.1)
        x, m = preprocess_pair(table.parent / row.path, table.parent / row.mask, VolumePreprocessing())
        assert x.shape == m.shape == (32, 32, 32)
        assert x[m].mean() > x[~m].mean() + 1.0  # the object is still there after preprocessing


def test_the_same_seed_writes_the_same_volumes_and_another_seed_others(tmp_path):
    a = write_synthetic_volumes(tmp_path / "a", per_class=1, seed=5)
    b = write_synthetic_volumes(tmp_path / "b", per_class=1, seed=5)
    c = write_synthetic_volumes(tmp_path / "c", per_class=1, seed=6)
    assert a.read_text() == b.read_text() != c.read_text()
    for row in pd.read_csv(a).itertuples():
        np.testing.assert_array_equal(read_volume(a.parent / row.path).array, read_volume(b.parent / row.path).array)


def test_the_command_line_writes_the_table(tmp_path, capsys):
    assert main([str(tmp_path / "cli"), "--per-class", "1", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip().endswith("volumes.csv")
    assert len(pd.read_csv(tmp_path / "cli" / "volumes.csv")) == 3
    with pytest.raises(ValueError, match="unknown synthetic class"):
        draw_volume("cube", np.random.default_rng(0))
