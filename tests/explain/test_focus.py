"""Lesion focus on hand-made maps whose answers are known. (The planted-shortcut model's focus is
tested with the shortcut test, in test_shortcuts.py, which trains it.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lesionlens.evaluation.bootstrap import stratified_indices
from lesionlens.explain.focus import (
    FocusSettings,
    centred_gaussian,
    focus_figures,
    lesion_focus,
    mean_interval,
)


def _square_mask(n: int = 1, size: int = 20, lo: int = 5, hi: int = 10) -> np.ndarray:
    m = np.zeros((n, size, size), bool)
    m[:, lo:hi, lo:hi] = True  # 25 of 400 pixels: area share 1/16
    return m


def test_mass_share_lift_and_pointing_by_hand():
    mask = _square_mask()
    inside = np.zeros((1, 20, 20))
    inside[0, 6, 6] = 3.0
    inside[0, 15, 15] = 1.0  # 3 of 4 units inside
    f = focus_figures(inside, mask)
    assert f["area_share"][0] == pytest.approx(25 / 400)
    assert f["mass_share"][0] == pytest.approx(0.75)
    assert f["lift"][0] == pytest.approx(0.75 * 16)
    assert f["pointing"][0] == 1.0

    flat = np.ones((1, 20, 20))  # a flat map: lift 1, and its "maximum" hits in proportion to the area
    f = focus_figures(flat, mask)
    assert f["lift"][0] == pytest.approx(1.0) and f["pointing"][0] == pytest.approx(25 / 400)

    outside = np.zeros((1, 20, 20))
    outside[0, 12, 5] = 1.0  # 3 px below the lesion: a miss without tolerance, a hit with 3 px
    assert focus_figures(outside, mask)["pointing"][0] == 0.0
    assert focus_figures(outside, mask, tolerance=3.0)["pointing"][0] == 1.0
    assert focus_figures(outside, mask, tolerance=2.9)["pointing"][0] == 0.0

    signed = -np.ones((1, 20, 20))  # only the positive part counts
    signed[0, 7, 7] = 2.0
    assert focus_figures(signed, mask)["mass_share"][0] == 1.0


def test_undefined_images_are_counted_and_bad_input_refused():
    maps = np.stack([np.zeros((20, 20)), np.ones((20, 20)), np.ones((20, 20))])
    masks = _square_mask(3)
    masks[2] = False  # an empty mask
    r = lesion_focus(maps, masks, settings=FocusSettings(n_resamples=50))
    assert r.n_undefined == 2 and r.group("all").n == 1
    assert any("2 image(s) have no figures" in n for n in r.notes)
    with pytest.raises(ValueError, match="aligned"):
        focus_figures(np.ones((2, 20, 20)), masks)
    with pytest.raises(ValueError, match="NaN"):
        focus_figures(np.full((3, 20, 20), np.nan), masks)


def test_centred_baseline_and_paired_comparison(tmp_path):
    """Lesions off centre, maps on them: the model beats the centre; maps on the centre do not."""
    rng = np.random.default_rng(0)
    n, size = 40, 32
    masks = np.zeros((n, size, size), bool)
    maps = np.zeros((n, size, size))
    for i in range(n):
        y, x = rng.integers(1, 5, 2) + (0 if i % 2 else 19)  # corners, >= 3 px from the centre
        masks[i, y:y + 8, x:x + 8] = True
        maps[i, y + 2:y + 6, x + 2:x + 6] = rng.uniform(0.5, 1.0)
        maps[i] += rng.uniform(0, 0.01, (size, size))
    y_true = np.arange(n) % 2
    y_pred = np.where(np.arange(n) < 30, y_true, 1 - y_true)
    r = lesion_focus(maps, masks, y_true, y_pred, ["nv", "mel"], FocusSettings(n_resamples=200))
    assert [g.name for g in r.groups] == ["all", "correct", "wrong", "true nv", "true mel"]
    assert r.group("correct").n == 30 and r.group("wrong").n == 10
    for m in ("mass_share", "lift", "pointing"):
        assert r.group("all").difference[m].low > 0
    assert r.group("all").model["pointing"].estimate == 1.0
    assert r.group("all").baseline["pointing"].estimate == 0.0
    json.dumps(r.to_dict())
    text = "\n".join(r.lines())
    assert "beats the centre" in text and "true mel (n=20)" in text
    files = r.write_figures(tmp_path)
    for path in files.values():
        assert Image.open(path).size[0] > 300

    centre = lesion_focus(centred_gaussian(n, size, size), masks, settings=FocusSettings(n_resamples=200))
    d = centre.group("all").difference["mass_share"]
    assert d.estimate == pytest.approx(0.0, abs=1e-12) and "no better than the centre" in "\n".join(centre.lines())


def test_mean_interval_is_the_paired_bootstrap():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    iv = mean_interval(values, stratified_indices(np.zeros(4, int), 500, 0))
    assert iv.estimate == 2.5 and 1.0 <= iv.low < 2.5 < iv.high <= 4.0
    assert np.isnan(mean_interval(np.array([]), np.zeros((3, 0), int)).estimate)
