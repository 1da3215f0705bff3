"""``POST /v1/segment``: one upload -> the lesion's mask at the image's own size, its outline and its
measurements, from a model with a mask head (a segmentation or multi-task bundle), torch-free.

The network sees the upload exactly as ``/v1/predict`` would (:mod:`lesionlens.serving.decode`);
its lesion probabilities go back through the bundle's preprocessing geometry to the image's size
and become the mask, outline and measurements of :func:`lesionlens.evaluation.lesion.find_lesion`
(the same code as ``lesionlens predict``), with the card's threshold and clean-up. Decoding and the
mask work run in the decode pool, the model on its own thread (batched with other requests), so
the event loop only waits. The pool's size (``--decode-workers``, the usable cores by default) also
bounds the memory: the mask work on a 24-megapixel photo peaks at about 0.5 GB of arrays (measured:
restored probabilities, labels, the lesion's pixels and colours) and takes about 3 s on a loaded
2-core machine; at 256 px it is a few milliseconds.

The outline is returned as polygons (pixel corners in the image's coordinates, the lesion on the
right of each), not as a PNG: the web page draws them as SVG over the image at any zoom, and a
client can fill, scale or simplify them without decoding anything. The mask itself is a PNG.
"""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import Executor

import numpy as np

from lesionlens.data.images import normalize
from lesionlens.evaluation.lesion import find_lesion
from lesionlens.evaluation.mask_ops import mask_probabilities
from lesionlens.serving.decode import decode_upload_full
from lesionlens.serving.errors import ApiError
from lesionlens.serving.runtime import BundleModel
from lesionlens.serving.served import Served


def require_head(model: BundleModel, head: str) -> None:
    """An ApiError (400) naming what the served model lacks when it has no ``head``
    ("classification" or "segmentation")."""
    if head in model.heads:
        return
    what = f"this model ({model.card.architecture}, task {model.task})"
    if head == "classification":
        raise ApiError(400, "no_classification_head",
                       f"{what} has no classification head: it outlines lesions and gives no class probabilities; "
                       "POST the image to /v1/segment for its lesion mask and measurements")
    raise ApiError(400, "no_mask_head",
                   f"{what} has no mask head: it classifies images and cannot outline a lesion; POST the image to "
                   "/v1/predict, or serve a segmentation or multitask bundle for /v1/segment")


async def segment_upload(served: Served, pool: Executor, max_pixels: int, name: str, data: bytes,
                         mm_per_pixel: float | None = None) -> dict:
    """The answer of ``/v1/segment`` for one upload (without ``model`` and ``disclaimer``, which the
    service adds); an ApiError for an upload that is not a usable image."""
    model = served.model
    require_head(model, "segmentation")
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    view, image = await loop.run_in_executor(pool, decode_upload_full, data, model.preprocessing, max_pixels, name)
    decoded = time.perf_counter()
    _, _, mask_logits = await served.infer(normalize(view[None], model.preprocessing))
    inferred = time.perf_counter()
    answer = await loop.run_in_executor(pool, lesion_answer, mask_logits, image, model, mm_per_pixel)
    done = time.perf_counter()
    return {"filename": name, **answer,
            "timing": {"decode_ms": _ms(decoded - started), "model_ms": _ms(inferred - decoded),
                       "mask_ms": _ms(done - inferred), "total_ms": _ms(done - started)}}


def lesion_answer(mask_logits: np.ndarray, image: np.ndarray, model: BundleModel,
                  mm_per_pixel: float | None) -> dict:
    """The mask, outline and measurements of one image from its mask logits (1 x 1 x S x S)."""
    seg = model.segmentation
    lesion = find_lesion(mask_probabilities(mask_logits)[0], image, model.preprocessing, seg.threshold,
                         seg.keep_largest, mm_per_pixel)
    height, width = lesion.mask.shape
    return {
        "lesion": lesion.found,
        "width": width,
        "height": height,
        "mask_png_base64": base64.b64encode(lesion.mask_png()).decode("ascii"),
        "outline": [polygon.tolist() for polygon in lesion.outline],
        "measurements": lesion.measurements.to_dict() if lesion.found else None,
        "mask_rule": {"threshold": seg.threshold, "keep_largest": seg.keep_largest,
                      "fill_holes": seg.keep_largest, "resized": "probabilities bilinear to the image's size "
                                                                 f"({model.preprocessing.resize}), then thresholded"},
    }


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
