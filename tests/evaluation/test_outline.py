"""Outlines traced from masks: exact corners on shapes drawn by hand, one loop for pixels touching
at a corner, holes traced the other way round, and on random masks the polygons' signed areas add
up to the pixel count (the outline encloses exactly the mask)."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.evaluation.outline import outline_polygons, polygon_area


def test_a_rectangle_is_its_four_corners_clockwise():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True  # rows 1-2, columns 2-4
    (polygon,) = outline_polygons(mask)
    assert polygon.tolist() == [[2, 1], [5, 1], [5, 3], [2, 3]]
    assert polygon_area(polygon) == 6


def test_one_pixel_and_the_empty_mask():
    mask = np.zeros((3, 3), bool)
    assert outline_polygons(mask) == []
    mask[2, 0] = True  # at the image's edge: the outline runs along the border
    (polygon,) = outline_polygons(mask)
    assert polygon.tolist() == [[0, 2], [1, 2], [1, 3], [0, 3]]


@pytest.mark.parametrize("pixels", [[(1, 1), (2, 2)], [(1, 2), (2, 1)]])
def test_pixels_touching_at_a_corner_share_one_outline(pixels):
    mask = np.zeros((4, 4), bool)
    for r, c in pixels:
        mask[r, c] = True
    (polygon,) = outline_polygons(mask)  # 8-connected, as the mask's components
    assert len(polygon) == 8 and polygon_area(polygon) == 2


def test_a_hole_is_a_second_loop_the_other_way_round():
    mask = np.zeros((7, 7), bool)
    mask[1:6, 1:6] = True
    mask[3, 3] = False
    outer, hole = outline_polygons(mask)
    assert outer.tolist() == [[1, 1], [6, 1], [6, 6], [1, 6]]
    assert hole.tolist() == [[3, 3], [3, 4], [4, 4], [4, 3]]
    assert (polygon_area(outer), polygon_area(hole)) == (25, -1)


def test_random_masks_are_enclosed_exactly():
    rng = np.random.default_rng(0)
    for trial in range(150):
        mask = rng.random((rng.integers(1, 25), rng.integers(1, 25))) < rng.uniform(0.1, 0.9)
        polygons = outline_polygons(mask)
        assert sum(polygon_area(p) for p in polygons) == mask.sum(), trial
        for p in polygons:
            steps = np.roll(p, -1, axis=0) - p
            assert ((steps[:, 0] == 0) ^ (steps[:, 1] == 0)).all(), trial  # axis-parallel sides, no repeats
            following = np.roll(steps, -1, axis=0)
            turns = steps[:, 0] * following[:, 1] - steps[:, 1] * following[:, 0]
            assert (turns != 0).all(), trial  # only the corners where it turns
            assert p[:, 0].min() >= 0 and p[:, 0].max() <= mask.shape[1] and p[:, 1].max() <= mask.shape[0]


def test_a_large_ellipse_has_one_outline():
    yy, xx = np.mgrid[:600, :900]
    mask = ((yy - 300) / 250) ** 2 + ((xx - 450) / 400) ** 2 < 1
    (polygon,) = outline_polygons(mask)
    assert polygon_area(polygon) == mask.sum()


def test_only_two_dimensional_masks():
    with pytest.raises(ValueError, match="one H x W mask"):
        outline_polygons(np.zeros((2, 3, 3), bool))
