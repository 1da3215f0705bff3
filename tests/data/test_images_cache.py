"""Decoding (orientation, colour modes, resize) and the decoded-image cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import write_image
from PIL import Image

from lesionlens.data import cache as cache_module
from lesionlens.data.cache import decode_images
from lesionlens.data.images import ImageDecodeError, Preprocessing, load_rgb, normalize, preprocess_image


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_colour_modes_become_rgb(mode):
    img = Image.new("RGB", (8, 6), (10, 200, 30)).convert(mode)
    data = _png(img) if mode != "CMYK" else _jpeg(img)
    out = load_rgb(data)
    assert out.mode == "RGB" and out.size == (8, 6)


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return buf.getvalue()


def test_sixteen_bit_grey_is_scaled_not_clipped():
    a = np.array([[0, 32768, 65535]], dtype=np.uint16)
    out = np.asarray(load_rgb(_png(Image.fromarray(a))))
    assert out[0, :, 0].tolist() == [0, 128, 255]


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (255, 0, 0, 255))
    out = np.asarray(load_rgb(_png(img)))
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [255, 0, 0]


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    out = np.asarray(load_rgb(buf.getvalue()))
    assert out.shape == (40, 20, 3)
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # the white half is now on top


def test_squash_and_crop():
    img = Image.new("RGB", (60, 30), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 15, 30))  # red left quarter
    squash = preprocess_image(_png(img), Preprocessing(image_size=20, resize="squash"))
    crop = preprocess_image(_png(img), Preprocessing(image_size=20, resize="crop"))
    assert squash.shape == crop.shape == (20, 20, 3)
    assert squash[10, 1, 0] > 200  # the red quarter survives the squash
    assert crop[10, 1, 0] < 50  # and is cut off by the centre crop


def test_garbage_and_bombs_are_decode_errors():
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        load_rgb(b"GIF89a not really")
    with pytest.raises(ImageDecodeError, match="more than the limit"):
        load_rgb(_png(Image.new("L", (100, 100))), max_pixels=5000)


def test_normalize_layout_and_values():
    batch = np.full((2, 4, 4, 3), 255, np.uint8)
    x = normalize(batch, Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert x.shape == (2, 3, 4, 4) and x.dtype == np.float32 and np.allclose(x, 1.0)


def test_cache_decodes_once_and_keys_on_content_and_size(tmp_path, monkeypatch):
    paths = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(5)]
    calls = []
    real = cache_module.preprocess_image
    monkeypatch.setattr(cache_module, "preprocess_image", lambda p, pre: calls.append(p) or real(p, pre))
    pre = Preprocessing(image_size=16)
    first = decode_images(paths, pre, tmp_path / "c", progress=False)
    assert len(calls) == 5 and first.array.shape == (5, 16, 16, 3)
    again = decode_images(paths, pre, tmp_path / "c", progress=False)
    assert len(calls) == 5  # nothing decoded the second time
    assert np.array_equal(np.asarray(first.array), np.asarray(again.array))
    decode_images(paths, Preprocessing(image_size=24), tmp_path / "c", progress=False)
    assert len(calls) == 10  # another size is another entry
    write_image(paths[2], seed=99)  # edit one image: its content hash changes
    edited = decode_images(paths, pre, tmp_path / "c", progress=False)
    assert len(calls) == 15 and not np.array_equal(np.asarray(edited.array[2]), np.asarray(first.array[2]))


def test_cache_remembers_failures(tmp_path):
    good = write_image(tmp_path / "a.jpg")
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken")
    pre = Preprocessing(image_size=8)
    first = decode_images([good, bad], pre, tmp_path / "c", progress=False)
    second = decode_images([good, bad], pre, tmp_path / "c", progress=False)
    assert list(first.failures) == list(second.failures) == [1]
    assert "cannot decode" in second.failures[1]
