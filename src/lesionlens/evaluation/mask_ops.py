"""Binary lesion masks: checking them, thresholding probabilities, their boundary, and the clean-up a
predicted mask gets before it is scored, measured or served.

A mask is a bool array, True on the lesion: H x W for one image, N x H x W for several. Masks may
arrive as bool, as integers or floats holding only 0 and 1, or (predictions) as probabilities in
[0, 1]; a probability counts as lesion where it is >= the threshold (MONAI's ``AsDiscrete`` and the
classifier's operating points decide the same way). Anything else is refused with the image that
holds it and the values found, never guessed at: a 0/255 mask read as 0/1 would be all lesion.

Torch-free (numpy and ``scipy.ndimage`` only): the metrics, the measurements and the server share it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

# A lesion's pixels touching at a corner belong to one component (8-connectivity), as a drawn
# outline would join them.
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# The boundary is what one erosion by the 4-connected cross removes: the surface of MONAI's and
# medpy's surface distances.
CROSS = ndimage.generate_binary_structure(2, 1)


def binary_masks(values, what: str = "mask", image_ids: Sequence[str] | None = None,
                 threshold: float | None = None) -> np.ndarray:
    """``values`` as a bool array of the same shape. Bool passes as it is; integers and floats must
    hold only 0 and 1, unless ``threshold`` is given: then floats are probabilities in [0, 1] and a
    pixel is lesion where its probability is >= ``threshold``. Bad values raise a ValueError that
    names ``what``, the image (by its id in ``image_ids``, or its position) and the values found."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"the {what} is of type {arr.dtype}; a mask is bool, 0/1 or (predictions) probabilities")
    probabilities = threshold is not None and arr.dtype.kind == "f"
    if probabilities:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"the threshold on probabilities must lie in (0, 1], got {threshold}")
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
        problem = "values that are not probabilities in [0, 1]"
    else:
        bad = (arr != 0) & (arr != 1)
        problem = "values other than 0 and 1"
    if bad.any():
        found = ", ".join(f"{v:g}" for v in np.unique(arr[bad])[:5])
        hint = " (a 0/255 mask must be divided by 255 first)" if arr.max() == 255 else ""
        raise ValueError(f"the {what}{_where(bad, image_ids)} holds {problem}: {found}{hint}")
    return arr >= threshold if probabilities else arr == 1


def _where(bad: np.ndarray, image_ids: Sequence[str] | None) -> str:
    """" of image 'id'" for the first image with a bad pixel in an N x H x W array, else ""."""
    if bad.ndim != 3:
        return ""
    i = int(np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))[0])
    return f" of image {image_ids[i]!r}" if image_ids is not None else f" of image #{i}"


def boundary(masks: np.ndarray) -> np.ndarray:
    """The lesion pixels with a 4-neighbour outside the lesion (outside the image counts as outside),
    of an H x W mask or of each image of an N x H x W stack."""
    masks = np.asarray(masks, dtype=bool)
    structure = CROSS if masks.ndim == 2 else CROSS[None]  # never erode across images
    return masks & ~ndimage.binary_erosion(masks, structure=structure, border_value=0)


def mask_probabilities(logits) -> np.ndarray:
    """Lesion probabilities (N x H x W float64) from a network's mask logits (N x 1 x H x W): the
    logistic function, computed without overflow. The server, ``predict`` and the export check all
    use this one, so a pixel at the threshold falls on the same side everywhere."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 4 or z.shape[1] != 1:
        raise ValueError(f"mask logits are N x 1 x H x W, got shape {z.shape}")
    return np.exp(-np.logaddexp(0.0, -z[:, 0]))


def postprocess_mask(probabilities, threshold: float = 0.5, keep_largest: bool = True,
                     fill_holes: bool = True) -> np.ndarray:
    """A predicted mask made ready to measure or serve: probabilities (H x W or N x H x W) thresholded
    (>= ``threshold``; bool or 0/1 masks pass as they are), then in each image only the largest
    8-connected component kept (one lesion per dermoscopic image, as in the ISIC data; nnU-Net's
    post-processing does the same) and the holes inside it filled (a lesion has no holes; a gap in
    a prediction is an error). An empty mask stays empty."""
    masks = binary_masks(probabilities, "probabilities", threshold=threshold)
    if masks.ndim not in (2, 3):
        raise ValueError(f"a mask is H x W or N x H x W, got shape {masks.shape}")
    if masks.ndim == 3:
        return np.stack([_clean(m, keep_largest, fill_holes) for m in masks]) if len(masks) else masks.copy()
    return _clean(masks, keep_largest, fill_holes)


def _clean(mask: np.ndarray, keep_largest: bool, fill_holes: bool) -> np.ndarray:
    out = mask.copy()
    if keep_largest and out.any():
        labels, n = ndimage.label(out, structure=EIGHT_CONNECTED)
        if n > 1:
            sizes = np.bincount(labels.ravel())
            sizes[0] = 0
            out = labels == int(sizes.argmax())  # ties: the first in raster order
    if fill_holes:
        out = fill_holes_of(out)
    return out


def fill_holes_of(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: every background region (4-connected, the complement of the
    lesion's 8-connectivity) that does not reach the image's border becomes lesion. The same as
    ``scipy.ndimage.binary_fill_holes``, by one labelling instead of its iterated dilation (some
    40 times faster at 256 x 256, which the server's latency feels)."""
    background, n = ndimage.label(~mask, structure=CROSS)
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = False  # label 0 is the lesion itself
    return ~outside[background]


def count_components(mask: np.ndarray) -> int:
    """The number of 8-connected lesion components of an H x W mask."""
    return int(ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)[1])
