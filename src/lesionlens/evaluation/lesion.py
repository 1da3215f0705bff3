"""A lesion found in one image: the network's mask probabilities (on its square input) turned into
the mask at the image's own size, its outline and its measurements.

This is what ``lesionlens predict`` writes and what ``POST /v1/segment`` answers, so both make the
same mask from the same probabilities: restored through the bundle's preprocessing geometry
(:func:`~lesionlens.data.images.restore_geometry`, bilinear, before thresholding, so the outline
is as smooth as the image's resolution allows), thresholded and cleaned up with the card's settings
(:func:`~lesionlens.evaluation.mask_ops.postprocess_mask`), outlined
(:func:`~lesionlens.evaluation.outline.outline_polygons`) and measured with the image's colours
(:func:`~lesionlens.evaluation.measurements.measure_lesion`). An image where no pixel reaches the
threshold has no lesion: no outline and no measurements, which is an answer, not an error.

Torch-free (numpy, scipy, Pillow): the server calls it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lesionlens.data.images import Preprocessing, restore_geometry
from lesionlens.evaluation.mask_ops import postprocess_mask
from lesionlens.evaluation.measurements import LesionMeasurements, measure_lesion
from lesionlens.evaluation.outline import outline_polygons


@dataclass(frozen=True)
class Lesion:
    mask: np.ndarray  # H x W bool, at the image's own size
    outline: list[np.ndarray]  # closed polygons of (x, y) pixel corners (lesion on the right)
    measurements: LesionMeasurements | None  # None when no lesion was found

    @property
    def found(self) -> bool:
        return self.measurements is not None

    def mask_png(self) -> bytes:
        """The mask as an 8-bit greyscale PNG of the image's size: 255 on the lesion, 0 elsewhere (the
        ISIC ground-truth convention, which :func:`lesionlens.data.masks.read_mask` reads back)."""
        buffer = io.BytesIO()
        Image.fromarray(self.mask.astype(np.uint8) * 255, "L").save(buffer, format="PNG")
        return buffer.getvalue()


def find_lesion(probabilities: np.ndarray, image: np.ndarray, pre: Preprocessing, threshold: float,
                keep_largest: bool, mm_per_pixel: float | None = None) -> Lesion:
    """The lesion in ``image`` (H x W x 3 uint8, upright, full size) from the network's lesion
    ``probabilities`` on its input (S x S, made from that image with ``pre``); ``threshold`` and
    ``keep_largest`` are the card's (``SegmentationInfo``), ``mm_per_pixel`` the image's scale."""
    height, width = image.shape[:2]
    full = restore_geometry(probabilities, (width, height), pre)
    mask = postprocess_mask(full, threshold, keep_largest=keep_largest, fill_holes=keep_largest)
    if not mask.any():
        return Lesion(mask, [], None)
    return Lesion(mask, outline_polygons(mask), measure_lesion(mask, image, mm_per_pixel))
