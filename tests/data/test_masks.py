"""Lesion masks: both layouts are found, bad masks are named by file, and a mask follows its image's
preprocessing pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import save, write_image
from PIL import Image

from lesionlens.data.images import Preprocessing, preprocess_image
from lesionlens.data.masks import (
    MaskError,
    load_pairs,
    pair_folder,
    pair_images,
    preprocess_mask,
    read_mask,
)
from lesionlens.data.table import DataError


def _mask(path, values: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8), "L").save(path)
    return path


def _disc(h: int, w: int, top: int = 255) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.where((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 4) ** 2, top, 0)


def test_isic2017_layout(tmp_path):
    for part, ids in (("Training", (0, 1, 2)), ("Validation", (7,))):
        for i in ids:
            write_image(tmp_path / f"ISIC-2017_{part}_Data" / f"ISIC_{i:07d}.jpg", size=24, seed=i)
            if i != 2:
                _mask(tmp_path / f"ISIC-2017_{part}_Part1_GroundTruth" / f"ISIC_{i:07d}_segmentation.png",
                      _disc(24, 24))
    found = pair_folder(tmp_path)
    assert [p.image_id for p in found.pairs] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000007"]
    assert len(found.missing) == 1 and "ISIC_0000002.jpg" in str(found.missing[0])
    assert "without a mask" in "\n".join(found.lines())
    # the data folder alone finds its sibling mask folder too
    assert len(pair_folder(tmp_path / "ISIC-2017_Validation_Data")) == 1
    with pytest.raises(DataError, match="ISIC_0000002.jpg: no lesion mask"):
        load_pairs(found, Preprocessing(image_size=16))


def test_folder_pair_by_stem_with_suffixes(tmp_path):
    for name, stem in (("a", "a_mask"), ("b", "b"), ("c", "c_segmentation")):
        write_image(tmp_path / "img" / f"{name}.jpg", size=20)
        _mask(tmp_path / "masks" / f"{stem}.png", _disc(20, 20, top=1))
    found = pair_images(sorted((tmp_path / "img").iterdir()), [tmp_path / "masks"])
    assert [p.mask.name for p in found.pairs] == ["a_mask.png", "b.png", "c_segmentation.png"]
    images, masks = load_pairs(found, Preprocessing(image_size=10))
    assert images.shape == (3, 10, 10, 3) and masks.shape == (3, 10, 10) and masks.dtype == bool
    assert masks[:, 5, 5].all() and not masks[:, 0, 0].any()
    with pytest.raises(FileNotFoundError, match="neither the ISIC 2017"):
        pair_folder(tmp_path / "img")


def test_bad_masks_are_named_by_file(tmp_path):
    save(np.zeros((20, 30, 3), np.uint8), tmp_path / "img" / "grey.png")
    save(np.zeros((20, 30, 3), np.uint8), tmp_path / "img" / "size.png")
    save(np.zeros((20, 30, 3), np.uint8), tmp_path / "img" / "fine.png")
    save(np.zeros((20, 30, 3), np.uint8), tmp_path / "img" / "lost.png")
    soft = _disc(20, 30)
    soft[0, 0] = 128
    _mask(tmp_path / "m" / "grey_mask.png", soft)
    _mask(tmp_path / "m" / "size_mask.png", _disc(30, 30))
    _mask(tmp_path / "m" / "fine_mask.png", _disc(40, 60))  # twice the size, same aspect: accepted
    found = pair_images(sorted((tmp_path / "img").iterdir()), [tmp_path / "m"])
    with pytest.raises(DataError) as e:
        load_pairs(found, Preprocessing(image_size=8))
    msg = str(e.value)
    assert "grey_mask.png: not a binary mask: values 0, 128, 255" in msg
    assert "size_mask.png: the mask is 30x30 but its image is 30x20" in msg
    assert "lost.png: no lesion mask" in msg
    assert "fine" not in msg
    assert read_mask(tmp_path / "m" / "fine_mask.png", (30, 20)).shape == (20, 30)
    (tmp_path / "m" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(MaskError, match="broken.png: cannot read the mask"):
        read_mask(tmp_path / "m" / "broken.png")
    save(np.dstack([_disc(8, 8)] * 2 + [np.zeros((8, 8))]).astype(np.uint8), tmp_path / "m" / "colour.png")
    with pytest.raises(MaskError, match="colour.png: a colour image"):
        read_mask(tmp_path / "m" / "colour.png")


@pytest.mark.parametrize("resize", ["squash", "crop"])
def test_mask_follows_the_image_geometry(tmp_path, resize):
    """A mask drawn from the image's own bright pixels stays on them after preprocessing."""
    h, w = 60, 90
    yy, xx = np.mgrid[:h, :w]
    lesion = (yy > 15) & (yy < 45) & (xx > 50) & (xx < 80)  # off centre, so a wrong crop would show
    pixels = np.where(lesion[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    save(pixels, tmp_path / "i.png")
    pre = Preprocessing(image_size=30, interpolation="nearest", resize=resize)
    image = preprocess_image(tmp_path / "i.png", pre)
    mask = preprocess_mask(lesion, pre)
    assert mask.shape == (30, 30)
    assert np.array_equal(mask, image[..., 0] > 127)
