"""Submitted photos lose their metadata (GPS included), are turned upright, and keep their pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from case_helpers import jpeg_bytes
from PIL import Image

from lesionlens.cases.images import EXIF_ORIENTATION, ImageFiles, clean_image

GPS_IFD = 0x8825


def exif_with(orientation: int = 1, gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    exif[0x010F] = "PhoneMaker"  # camera maker
    if gps:
        exif[GPS_IFD] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}
    return exif.tobytes()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def test_gps_and_all_exif_removed_without_touching_pixels():
    original = jpeg_bytes(1, exif=exif_with(1))
    assert b"PhoneMaker" in original
    c = clean_image(original + b"\xff\xd8 trailing preview image with its own EXIF PhoneMaker", "JPEG")
    assert b"PhoneMaker" not in c.data and b"Exif" not in c.data
    with Image.open(io.BytesIO(c.data)) as img:
        assert not img.getexif() and img.size == (64, 48)
    assert np.array_equal(decoded(c.data), decoded(original))  # lossless: not re-encoded


def test_orientation_is_applied_and_the_tag_removed():
    original = jpeg_bytes(2, size=(64, 48), exif=exif_with(6))  # 6: rotate 90 degrees clockwise to view
    c = clean_image(original, "JPEG")
    assert (c.width, c.height) == (48, 64)
    with Image.open(io.BytesIO(c.data)) as img:
        assert img.size == (48, 64) and EXIF_ORIENTATION not in img.getexif()
        assert GPS_IFD not in img.getexif()
    assert b"PhoneMaker" not in c.data


def test_png_text_chunks_removed():
    out = io.BytesIO()
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "52.5 N 13.4 E")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(out, "PNG", pnginfo=info)
    c = clean_image(out.getvalue(), "PNG")
    assert b"Location" not in c.data
    assert np.array_equal(decoded(c.data), decoded(out.getvalue()))


def test_progressive_jpeg_is_kept_whole():
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(
        out, "JPEG", progressive=True, exif=exif_with(1))
    c = clean_image(out.getvalue(), "JPEG")
    assert np.array_equal(decoded(c.data), decoded(out.getvalue()))


def test_files_are_content_addressed_and_names_are_checked(tmp_path):
    files = ImageFiles(tmp_path)
    c = clean_image(jpeg_bytes(3), "JPEG")
    path = files.put(c)
    assert path.name == c.name and path.read_bytes() == c.data
    assert files.put(c) == path and list(files.names()) == [c.name]
    for bad in ("../../etc/passwd", "a" * 64 + ".exe", "g" * 64 + ".jpg"):
        with pytest.raises(ValueError):
            files.path(bad)
