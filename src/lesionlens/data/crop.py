"""Segment, then classify: cut an image to the box around its lesion before the classifier sees it.

    image (decoded at 4x the classifier's size) -> the segmentation bundle's ONNX graph at its own
        size -> lesion mask (threshold, largest region, holes filled) -> the mask's bounding box in
        the image's pixels, grown by ``margin`` of its side on every side and squared where the
        image allows -> the crop -> the classifier's usual resize

It runs inside :func:`lesionlens.data.images.preprocess_image`, so training (through the cache),
``evaluate``, ``predict``, ``explain`` and the torch-free server crop the same way. A classifier
trained with ``--lesion-crop SEG_BUNDLE`` carries a copy of the segmenter in ``BUNDLE/segmenter/``
(exported to ONNX there), and its card records the crop; an image in which the segmenter finds
no lesion is classified whole, and a warning names it.

This is the one place where reading data reaches up the data flow, to a trained model: the
segmenter is loaded through the server's checked ONNX loader and its masks are cleaned up by the
evaluation's mask operations (imported where used, so nothing cycles).
"""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from lesionlens.data.images import LesionCrop, Preprocessing, normalize, resize_square

log = logging.getLogger(__name__)

CROP_DRAFT = 4  # decode at least 4x the classifier's side: a lesion a quarter of the image wide keeps its detail
SEGMENTER_FOLDER = "segmenter"
_COPY_IGNORE = ("checkpoints", "logs", "evaluations")  # training leftovers the crop never reads


def crop_box(mask: np.ndarray, size: tuple[int, int], pre: Preprocessing,
             margin: float) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom) in the image's pixels around the lesion of ``mask`` (the
    segmenter's S x S view, made by ``pre``'s geometry from an image of ``size`` = (width,
    height)): grown by ``margin`` x its longer side on every side, squared, and shifted (then
    clipped) to lie inside the image. None for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    s = mask.shape[0]
    width, height = size
    if pre.resize == "crop":  # the view is the centre square of the image, scaled
        side = min(width, height)
        sx = sy = side / s
        ox, oy = (width - side) / 2, (height - side) / 2
    else:  # squash: the view is the whole image, stretched
        sx, sy, ox, oy = width / s, height / s, 0.0, 0.0
    left, right = ox + xs.min() * sx, ox + (xs.max() + 1) * sx
    top, bottom = oy + ys.min() * sy, oy + (ys.max() + 1) * sy
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    w, h = min(side, width), min(side, height)
    x0 = min(max((left + right) / 2 - w / 2, 0.0), width - w)
    y0 = min(max((top + bottom) / 2 - h / 2, 0.0), height - h)
    box = (round(x0), round(y0), round(x0 + w), round(y0 + h))
    return box if box[2] > box[0] and box[3] > box[1] else None


class Segmenter:
    """A segmentation bundle's ONNX graph, ready to find the lesion's box in an RGB image."""

    def __init__(self, crop: LesionCrop):
        from lesionlens.serving.runtime import BundleModel

        self.model = BundleModel(crop.segmenter, threads=1)
        card = self.model.card
        if not self.model.segments:
            raise ValueError(f"{crop.segmenter}: not a segmentation bundle (no mask head): it cannot crop to the lesion")
        if crop.digest and card.onnx.sha256 != crop.digest:
            raise ValueError(f"{crop.segmenter}: its ONNX graph (sha256 {card.onnx.sha256[:12]}) is not the one the "
                             f"classifier was trained with ({crop.digest[:12]}); the crop would differ: refused")
        self.pre = card.preprocessing
        self.threshold = card.segmentation.threshold
        self.margin = crop.margin

    def box(self, img: Image.Image) -> tuple[int, int, int, int] | None:
        from lesionlens.evaluation.mask_ops import postprocess_mask

        view = resize_square(img, self.pre)
        logits = self.model.run(normalize(view[None], self.pre), features=False).masks[0, 0]
        mask = postprocess_mask(1.0 / (1.0 + np.exp(-logits.astype(np.float64))), self.threshold)
        return crop_box(mask, img.size, self.pre, self.margin)


_loaded: dict[LesionCrop, Segmenter] = {}
_lock = threading.Lock()


def segmenter(crop: LesionCrop) -> Segmenter:
    """The loaded segmenter of ``crop`` (once per process; decoding threads share it)."""
    with _lock:
        if crop not in _loaded:
            _loaded[crop] = Segmenter(crop)
        return _loaded[crop]


def crop_to_lesion(img: Image.Image, crop: LesionCrop, name: str = "image") -> Image.Image:
    """``img`` cut to its lesion's box; the whole image (and a warning naming it) where none is found."""
    box = segmenter(crop).box(img)
    if box is None:
        log.warning("%s: the segmenter found no lesion; the whole image is classified", name)
        return img
    return img.crop(box)


def lesion_box(source: str | Path, pre: Preprocessing, size: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The box :func:`~lesionlens.data.images.preprocess_image` cuts ``source`` to, in the pixels of
    the image at ``size`` (its full upright size, where a mask lives; the decoder may have scaled the
    image down), or None where no lesion is found."""
    from lesionlens.data.images import load_rgb

    img = load_rgb(source, draft_size=CROP_DRAFT * pre.image_size)
    box = segmenter(pre.lesion_crop).box(img)
    if box is None:
        return None
    sx, sy = size[0] / img.width, size[1] / img.height
    return round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)


def bundle_segmenter(source: str | Path, bundle: Path, margin: float, reuse: bool = False) -> LesionCrop:
    """Copy the segmentation bundle ``source`` into ``bundle/segmenter`` (exported to ONNX there
    when it has no graph yet) and return the crop that uses it; with ``reuse`` (a resumed run) the
    copy already there is kept. Training calls it before any image is decoded, so a bad segmenter
    fails first."""
    from lesionlens.bundle.card import read_card

    if not 0 <= margin <= 1:
        raise ValueError(f"crop margin must be between 0 and 1 (a share of the lesion box's side), got {margin}")
    target = Path(bundle) / SEGMENTER_FOLDER
    if not (reuse and (target / "card.json").is_file()):
        card = read_card(source)
        if card.task == "classification":
            raise ValueError(f"{source}: a classification bundle; --lesion-crop needs a segmentation or multitask "
                             "bundle")
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(card.path, target, ignore=shutil.ignore_patterns(*_COPY_IGNORE))
    copied = read_card(target)
    if copied.onnx is None:
        from lesionlens.export.onnx import export_bundle

        log.info("exporting the segmenter %s to ONNX (in the copy %s)", source, target)
        export_bundle(target)
        copied = read_card(target)
    crop = LesionCrop(str(target), margin, copied.onnx.sha256)
    segmenter(crop)  # loads and checks it now
    return crop
