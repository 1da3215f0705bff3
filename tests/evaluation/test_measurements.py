"""Lesion measurements and mask clean-up on drawn shapes whose answers are known by hand; the
modules the server imports stay torch-free."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from lesionlens.evaluation.mask_ops import boundary, fill_holes_of, postprocess_mask
from lesionlens.evaluation.measurements import DERMOSCOPIC_COLOURS, crofton_perimeter, measure_lesion


def _disc(radius: float, size: int = 128, centre: tuple[float, float] = (64.3, 63.6)) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def _l_shape(long_arm: int = 60, short_arm: int = 60, width: int = 15) -> np.ndarray:
    """An L: a vertical bar ``long_arm`` x ``width`` and, along its foot, a horizontal bar reaching
    ``short_arm`` from the left edge."""
    m = np.zeros((80, 80), bool)
    m[5:5 + long_arm, 5:5 + width] = True
    m[5 + long_arm - width:5 + long_arm, 5:5 + short_arm] = True
    return m


def test_a_disc_is_symmetric_compact_and_two_radii_across():
    r = 30
    m = _disc(r)
    x = measure_lesion(m, mm_per_pixel=0.05)
    assert x.area_px == m.sum() and x.area_px == pytest.approx(math.pi * r ** 2, rel=0.01)
    assert x.asymmetry_major_axis < 0.02 and x.asymmetry_minor_axis < 0.02
    assert x.compactness == pytest.approx(1.0, abs=0.02)
    assert x.perimeter_px == pytest.approx(2 * math.pi * r, rel=0.01)
    assert x.diameter_px == pytest.approx(2 * r, abs=1.5)  # pixel squares reach half a pixel beyond the centres
    assert 0.97 < x.solidity <= 1.0
    assert x.components == 1
    assert x.area_mm2 == pytest.approx(x.area_px * 0.0025) and x.diameter_mm == pytest.approx(x.diameter_px * 0.05)
    assert x.perimeter_mm == pytest.approx(x.perimeter_px * 0.05)
    assert x.colours is None and x.colour_shares is None
    json.dumps(x.to_dict())


def test_an_l_shape_is_asymmetric_and_its_hull_and_diameter_are_exact():
    equal = measure_lesion(_l_shape())  # equal arms: mirror-symmetric about its diagonal only
    assert min(equal.asymmetry_major_axis, equal.asymmetry_minor_axis) == pytest.approx(0.0, abs=1e-9)
    assert max(equal.asymmetry_major_axis, equal.asymmetry_minor_axis) > 0.5
    # the pixel squares' hull: the 60 x 60 box less the 45 x 45 / 2 corner triangle; area 60*15 + 45*15
    assert equal.solidity == pytest.approx((60 * 15 + 45 * 15) / (60 * 60 - 45 * 45 / 2))
    assert equal.diameter_px == pytest.approx(60 * math.sqrt(2))  # corner to opposite corner
    assert equal.perimeter_px == pytest.approx(4 * 60, rel=0.06)  # Crofton, axis-aligned edges: ~5% short
    assert equal.compactness > 2.0

    unequal = measure_lesion(_l_shape(long_arm=70, short_arm=40))
    assert unequal.asymmetry_major_axis > 0.3 and unequal.asymmetry_minor_axis > 0.3

    rectangle = np.zeros((80, 80), bool)
    rectangle[10:30, 10:50] = True
    box = measure_lesion(rectangle)
    assert box.asymmetry_major_axis == 0.0 and box.asymmetry_minor_axis == 0.0 and box.solidity == 1.0
    assert box.diameter_px == pytest.approx(math.hypot(20, 40))


def test_crofton_perimeter_of_a_disc_does_not_depend_on_where_it_sits():
    rng = np.random.default_rng(0)
    offsets = [(0.0, 0.0), *rng.random((30, 2))]  # on a pixel centre (the worst case) and anywhere between
    errors = np.array([crofton_perimeter(_disc(20, centre=(64 + dy, 64 + dx))) / (2 * math.pi * 20) - 1
                       for dy, dx in offsets])
    assert np.abs(errors).max() < 0.02 and abs(errors.mean()) < 0.003
    assert boundary(_disc(20)).sum() < 0.92 * 2 * math.pi * 20  # what counting boundary pixels would say


def test_colours_count_the_reference_colours_above_the_share():
    m = _disc(40)
    image = np.full((128, 128, 3), 255, np.uint8)  # white skin around the lesion does not count
    rng = np.random.default_rng(0)
    light_brown = np.rint(255 * np.array(DERMOSCOPIC_COLOURS["light brown"]))
    blue_grey = np.rint(255 * np.array(DERMOSCOPIC_COLOURS["blue-grey"]))
    left = np.zeros_like(m)
    left[:, :64] = True
    image[m & left] = light_brown
    image[m & ~left] = blue_grey
    image = np.clip(image.astype(int) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)  # shading
    rows, cols = np.nonzero(m & ~left)
    speckle = rng.choice(len(rows), size=int(0.03 * m.sum()), replace=False)
    image[rows[speckle], cols[speckle]] = 0  # 3% black: present, but under the 5% share
    x = measure_lesion(m, image)
    assert x.colours == 2
    assert set(x.colour_shares) == set(DERMOSCOPIC_COLOURS) and sum(x.colour_shares.values()) == pytest.approx(1.0)
    assert x.colour_shares["light brown"] == pytest.approx((m & left).sum() / m.sum())
    assert x.colour_shares["black"] == pytest.approx(len(speckle) / m.sum())
    assert x.colour_shares["white"] == 0.0
    assert measure_lesion(m, image, min_colour_share=0.02).colours == 3


def test_bad_input_is_refused_with_the_problem_named():
    with pytest.raises(ValueError, match="no lesion in the mask"):
        measure_lesion(np.zeros((32, 32), bool))
    with pytest.raises(ValueError, match=r"values other than 0 and 1: 255.*divided by 255"):
        measure_lesion(_disc(10, size=32, centre=(16, 16)).astype(np.uint8) * 255)
    with pytest.raises(ValueError, match="one H x W mask"):
        measure_lesion(np.ones((2, 8, 8), bool))
    with pytest.raises(ValueError, match=r"image \(64, 64\) and the mask \(128, 128\) differ in size"):
        measure_lesion(_disc(10), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        measure_lesion(_disc(10), np.zeros((128, 128, 3), np.float32))
    with pytest.raises(ValueError, match="mm_per_pixel must be a positive number"):
        measure_lesion(_disc(10), mm_per_pixel=-0.1)


def test_measuring_a_lesion_at_256_px_takes_under_20_ms():
    m = _disc(70, size=256, centre=(128.4, 127.7))  # about 23% of the image: an ISIC 2017 lesion is 19% on average
    image = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    measure_lesion(m, image, 0.05)
    times = []
    for _ in range(15):
        start = time.perf_counter()
        measure_lesion(m, image, 0.05)
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.020


def test_postprocess_keeps_the_largest_component_and_fills_its_holes():
    probs = np.zeros((40, 40))
    probs[5:25, 5:25] = 0.9  # the lesion, 400 px
    probs[12:15, 12:15] = 0.1  # a hole in it
    probs[30:34, 30:34] = 0.8  # a speck elsewhere
    probs[25, 25] = 0.7  # touches the lesion only at a corner: part of it (8-connected)
    out = postprocess_mask(probs)
    assert out.dtype == bool and out[13, 13] and out[25, 25] and not out[31, 31]
    assert out.sum() == 400 + 1
    kept = postprocess_mask(probs, keep_largest=False, fill_holes=False)
    assert kept.sum() == 400 - 9 + 16 + 1 and not kept[13, 13]
    assert postprocess_mask(probs, threshold=0.95).sum() == 0  # nothing left: empty, not an error
    stack = postprocess_mask(np.stack([probs, probs.T[::-1]]))  # each image on its own
    assert (stack[0] == out).all() and (stack[1] == out.T[::-1]).all()
    with pytest.raises(ValueError, match="not probabilities"):
        postprocess_mask(probs * 2)
    with pytest.raises(ValueError, match=r"threshold .* \(0, 1\]"):
        postprocess_mask(probs, threshold=0.0)


def test_hole_filling_is_scipys():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    for trial in range(500):  # random masks have holes of every shape, touching the border or not
        mask = rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.uniform(0.05, 0.95)
        assert np.array_equal(fill_holes_of(mask), ndimage.binary_fill_holes(mask)), trial


def test_the_server_side_modules_import_no_torch_sklearn_or_matplotlib():
    script = ("import sys, json\n"
              "import lesionlens.evaluation.measurements, lesionlens.evaluation.segmentation\n"
              "import lesionlens.evaluation.mask_ops\n"
              "heavy = ('torch', 'pandas', 'sklearn', 'skimage', 'matplotlib', 'lightning', 'jinja2')\n"
              "print(json.dumps(sorted(m for m in heavy if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
