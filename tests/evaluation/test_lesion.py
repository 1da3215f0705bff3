"""A lesion from the network's probabilities: the map restored through each preprocessing geometry
to the image's own size, thresholded and cleaned with the card's settings, outlined and measured;
no lesion is an answer. Mask logits become probabilities without overflow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lesionlens.data.images import Preprocessing, restore_geometry
from lesionlens.data.masks import preprocess_mask
from lesionlens.evaluation.lesion import find_lesion
from lesionlens.evaluation.mask_ops import mask_probabilities
from lesionlens.evaluation.measurements import measure_lesion
from lesionlens.evaluation.outline import polygon_area


def _ellipse(height: int, width: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


@pytest.mark.parametrize("resize", ["squash", "crop"])
def test_a_mask_on_the_square_goes_back_where_it_came_from(resize):
    pre = Preprocessing(64, resize=resize)
    truth = _ellipse(90, 150, 45, 75, 30, 40)
    square = preprocess_mask(truth, pre).astype(np.float32)  # the geometry the network saw
    back = restore_geometry(square, (150, 90), pre)
    assert back.shape == (90, 150) and back.dtype == np.float32
    jaccard = ((back >= 0.5) & truth).sum() / ((back >= 0.5) | truth).sum()
    assert jaccard > 0.97


def test_crop_fills_what_the_network_never_saw():
    pre = Preprocessing(64, resize="crop")
    back = restore_geometry(np.ones((64, 64), np.float32), (150, 90), pre)
    # resized to 107 x 64, cut from column 21: columns 29.5 to 119.5 of the image were seen (bilinear
    # blends a pixel or two at either edge)
    assert back[:, :28].max() == 0 and back[:, 32:117].min() == 1 and back[:, 122:].max() == 0


def test_values_stay_in_range_and_the_size_is_checked():
    pre = Preprocessing(32)
    rng = np.random.default_rng(1)
    for size in ((7, 5), (33, 31), (400, 17), (1, 1)):
        out = restore_geometry(rng.random((32, 32)).astype(np.float32), size, pre)
        assert out.shape == size[::-1] and 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="32 x 32"):
        restore_geometry(np.zeros((16, 16)), (10, 10), pre)


def test_find_lesion_at_the_images_size_with_its_outline_and_measurements():
    pre = Preprocessing(32)
    image = np.full((60, 90, 3), (205, 160, 135), np.uint8)
    truth = _ellipse(60, 90, 30, 40, 15, 25)
    image[truth] = (95, 60, 45)
    probabilities = preprocess_mask(truth, pre).astype(np.float32)
    lesion = find_lesion(probabilities, image, pre, threshold=0.5, keep_largest=True, mm_per_pixel=0.1)
    assert lesion.found and lesion.mask.shape == (60, 90)
    assert (lesion.mask & truth).sum() / (lesion.mask | truth).sum() > 0.9
    assert sum(polygon_area(p) for p in lesion.outline) == lesion.mask.sum()
    m = lesion.measurements
    assert m == measure_lesion(lesion.mask, image, 0.1)
    assert m.area_mm2 == pytest.approx(m.area_px * 0.01) and m.colours >= 1
    png = Image.open(io.BytesIO(lesion.mask_png()))
    assert png.mode == "L" and png.size == (90, 60)
    assert np.array_equal(np.asarray(png) == 255, lesion.mask)


def test_keep_largest_follows_the_card():
    pre = Preprocessing(32)
    probabilities = np.zeros((32, 32), np.float32)
    probabilities[4:12, 4:12] = 0.9
    probabilities[20:24, 20:24] = 0.9
    image = np.zeros((32, 32, 3), np.uint8)
    assert find_lesion(probabilities, image, pre, 0.5, keep_largest=True).measurements.components == 1
    two = find_lesion(probabilities, image, pre, 0.5, keep_largest=False)
    assert two.measurements.components == 2 and len(two.outline) == 2


def test_no_pixel_at_the_threshold_is_no_lesion():
    pre = Preprocessing(32)
    lesion = find_lesion(np.full((32, 32), 0.3, np.float32), np.zeros((50, 40, 3), np.uint8), pre, 0.5, True)
    assert not lesion.found and lesion.outline == [] and lesion.measurements is None
    assert lesion.mask.shape == (50, 40) and not lesion.mask.any()


def test_mask_probabilities_without_overflow():
    logits = np.array([-1000.0, -2.0, 0.0, 3.0, 1000.0], np.float32).reshape(1, 1, 1, 5)
    with np.errstate(over="raise"):
        p = mask_probabilities(logits)
    assert p.shape == (1, 1, 5)
    assert p[0, 0].tolist() == pytest.approx([0.0, 1 / (1 + np.exp(2)), 0.5, 1 / (1 + np.exp(-3)), 1.0])
    with pytest.raises(ValueError, match="N x 1 x H x W"):
        mask_probabilities(np.zeros((2, 3, 4)))
