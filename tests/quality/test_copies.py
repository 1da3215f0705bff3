"""Altered copies by feature maps over the 8 dihedral views: a turned or mirrored copy has the same
8 views, and a cropped, turned copy is reported as an altered copy by the check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import photo, save
from PIL import Image

from lesionlens.data.images import resize_square
from lesionlens.data.load import read_table
from lesionlens.models.registry import create_model, get_spec
from lesionlens.quality.check import check_images
from lesionlens.quality.copies import (
    COPY_SIZE,
    copy_descriptors,
    copy_pairs,
    copy_similarity,
)

VIEWS = [lambda a, k=k: np.rot90(a, k) for k in range(4)] + [lambda a, k=k: np.rot90(a, k)[:, ::-1] for k in range(4)]


def _tiny():
    torch.manual_seed(0)
    return create_model("tiny_cnn", 2), get_spec("tiny_cnn").preprocessing_for(False).resized(COPY_SIZE)


@pytest.mark.parametrize("view", range(8))
def test_a_turned_or_mirrored_copy_has_the_same_eight_views(view):
    model, pre = _tiny()
    image = photo(3, COPY_SIZE)
    d = copy_descriptors(model, np.stack([image, np.ascontiguousarray(VIEWS[view](image))]), pre)
    assert d.shape[:2] == (2, 8)
    # the copy's views are the original's in another order: each one is matched exactly
    sim = d[0].astype(np.float32) @ d[1].astype(np.float32).T
    assert np.allclose(np.sort(sim.max(axis=1)), 1.0, atol=2e-3)
    assert copy_similarity(d, np.array([1]), np.array([0]))[0, 0] == pytest.approx(1.0, abs=2e-3)


def _cropped_turned(pixels: np.ndarray) -> Image.Image:
    img = Image.fromarray(pixels, "RGB")
    w, h = img.size
    img = img.crop((6, 3, w - 4, h - 7))  # about 6% of each side
    return img.resize((150, 150), Image.Resampling.BICUBIC).transpose(Image.Transpose.ROTATE_90)


def test_the_check_reports_a_cropped_turned_copy_as_an_altered_copy(tmp_path):
    for k in range(6):
        save(photo(20 + k, 160), tmp_path / "data" / ("mel" if k % 2 else "nv") / f"img{k}.png")
    _cropped_turned(photo(22, 160)).save(tmp_path / "data" / "nv" / "copy_of_img2.jpg", quality=85)
    table = read_table(tmp_path / "data")
    model, pre = _tiny()
    squares = np.stack([resize_square(Image.open(p).convert("RGB"), pre) for p in table.paths])
    d = copy_descriptors(model, squares, pre)
    names = [str(i).split("/")[-1] for i in table.frame["image_id"]]
    a, b = sorted((names.index("img2"), names.index("copy_of_img2")))
    threshold = 0.99  # this untrained tiny network: the copy 0.998, the closest distinct pair 0.981
    assert [(p.a, p.b) for p in copy_pairs(d, threshold)] == [(a, b)]

    plain = check_images(table)
    assert not plain.of_kind("near_duplicate")  # the hash does not survive the crop
    result = check_images(table, copy_descriptors=d, copy_threshold=threshold)
    found = result.of_kind("near_duplicate")
    assert [(f.a, f.b) for f in found] == [(a, b)] and "feature-map" in found[0].reason


def test_check_table_with_a_bundle_finds_the_cropped_turned_copy(tmp_path, exported_bundle):
    for k in range(6):
        save(photo(40 + k, 160), tmp_path / "data" / ("mel" if k % 2 else "nv") / f"img{k}.png")
    _cropped_turned(photo(42, 160)).save(tmp_path / "data" / "nv" / "copy_of_img2.jpg", quality=85)
    table = read_table(tmp_path / "data")
    from lesionlens.quality.check import check_table

    # the tiny bundle (trained 2 epochs on colour classes) tells textures apart poorly: a threshold of
    # 0.99 also pairs two distinct images (0.997), so this tests the wiring, and that the copy ranks first
    result = check_table(table, bundle=exported_bundle, label_errors=False, progress=False, copy_threshold=0.99)
    names = [str(i).split("/")[-1] for i in table.frame["image_id"]]
    found = {tuple(sorted((names[f.a], names[f.b]))): f for f in result.of_kind("near_duplicate")}
    assert ("copy_of_img2", "img2") in found and "feature-map" in found[("copy_of_img2", "img2")].reason
    assert max(found.values(), key=lambda f: f.score) is found[("copy_of_img2", "img2")]
    assert "copies:" in result.settings["embeddings"] and "copy descriptors" in result.seconds
    assert ("copy_of_img2", "img2") not in {tuple(sorted((names[f.a], names[f.b]))) for f in result.of_kind("same_lesion")}
