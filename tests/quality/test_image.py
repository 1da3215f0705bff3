"""The per-image quality check: each problem on a synthesized image, none on a normal one, and no
heavy imports (the server calls it)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import photo
from PIL import Image, ImageEnhance, ImageFilter

from lesionlens.quality.image import CODES, assess_image, measure_image


def _photo(size: int = 300) -> np.ndarray:
    return photo(3, size)


def _codes(rgb, original_size=None):
    return {p.code for p in assess_image(rgb, original_size)}


def test_a_normal_image_has_no_problem():
    assert assess_image(_photo()) == []


@pytest.mark.parametrize("code, make", [
    ("blurry", lambda img: np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(8)))),
    ("too_dark", lambda img: np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(0.25))),
    ("too_light", lambda img: np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(2.5))),
    ("low_information", lambda img: np.full_like(img, 128)),
])
def test_each_problem_is_found_on_a_synthesized_image(code, make):
    problems = assess_image(make(_photo()))
    assert code in {p.code for p in problems}
    found = next(p for p in problems if p.code == code)
    assert found.message and found.code in CODES


def test_too_small_and_odd_aspect_use_the_original_size():
    assert "too_small" in _codes(_photo(100))
    assert "too_small" not in _codes(_photo(100), original_size=(1200, 900))  # a reduced copy of a large photo
    strip = _photo(300)[:90]  # 300 x 90: 3.3 to 1
    assert _codes(strip) >= {"odd_aspect", "too_small"}
    assert "odd_aspect" not in _codes(_photo(), original_size=(400, 300))


def test_measures_do_not_depend_on_resolution():
    big = _photo(600)
    small = np.asarray(Image.fromarray(big).resize((256, 256), Image.Resampling.BILINEAR))
    a, b = measure_image(big), measure_image(small)
    assert abs(a.brightness - b.brightness) < 2 and abs(a.sharpness - b.sharpness) / b.sharpness < 0.2


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        assess_image(np.zeros((10, 10), np.uint8))


def test_image_module_imports_only_numpy_and_pillow():
    script = ("import sys, json; import lesionlens.quality.image; "
              "print(json.dumps(sorted(m for m in ('torch', 'pandas', 'sklearn', 'scipy', 'imagehash', 'jinja2') "
              "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
