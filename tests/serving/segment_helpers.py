"""Uploads and answer checks shared by the /v1/segment tests (TestClient, real server, browser)."""

from __future__ import annotations

import base64
import io

import numpy as np
from helpers import lesion_image
from PIL import Image

from lesionlens.evaluation.outline import polygon_area

SKIN = (205, 160, 135)  # the background of the generated lesions


def lesion_upload(seed: int = 3, size: tuple[int, int] = (96, 64), fmt: str = "PNG") -> tuple[bytes, np.ndarray]:
    """A generated lesion stretched to ``size`` (width, height; not square, not the bundle's 32 px),
    encoded, with its true mask at that size."""
    image, mask = lesion_image(seed, 48)
    picture = Image.fromarray(image).resize(size, Image.Resampling.BICUBIC)
    truth = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 127
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue(), truth


def blank_upload(size: tuple[int, int] = (40, 40)) -> bytes:
    """Plain skin: nothing to outline."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), SKIN, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def decoded_mask(body: dict) -> np.ndarray:
    """The answer's mask PNG as a bool array, checked to be 0/255 greyscale at the answer's size."""
    png = Image.open(io.BytesIO(base64.b64decode(body["mask_png_base64"])))
    assert png.format == "PNG" and png.mode == "L" and png.size == (body["width"], body["height"])
    values = np.asarray(png)
    assert set(np.unique(values).tolist()) <= {0, 255}
    return values == 255


def valid_segmentation(case, body: dict) -> None:
    """A 200 of /v1/segment is consistent: its mask, outline and measurements describe the same pixels."""
    mask = decoded_mask(body)
    assert body["lesion"] == bool(mask.any()), case
    assert sum(polygon_area(p) for p in body["outline"]) == mask.sum(), case
    if body["lesion"]:
        assert body["measurements"]["area_px"] == mask.sum(), case
    else:
        assert body["measurements"] is None and body["outline"] == [], case
