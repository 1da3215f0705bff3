"""``lesionlens predict`` on a segmentation or multi-task bundle: files and folders in, each image's
lesion mask out as a PNG at the image's own size, and one row of measurements per file.

The mask is made exactly as ``POST /v1/segment`` makes it (:func:`lesionlens.evaluation.lesion.
find_lesion`: the network's probabilities on its square input, restored through the bundle's
preprocessing geometry, thresholded and cleaned up with the card's settings), here from the
PyTorch model, with the bundle's test-time augmentation unless told otherwise. A multi-task
bundle's row also has its class answer. Files that cannot be read keep their row, with the reason,
and get no mask.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import read_card
from lesionlens.data.files import collect_images
from lesionlens.data.images import ImageDecodeError, load_rgb, preprocess_image
from lesionlens.evaluation.lesion import find_lesion
from lesionlens.inference import load_model, predict_mask_probabilities

CHUNK = 16  # images decoded (at full size too) and segmented together
# The measurements' columns, in the order a reader wants them; the colour shares follow as share_<colour>.
MEASURE_COLUMNS = ("area_px", "area_mm2", "diameter_px", "diameter_mm", "perimeter_px", "perimeter_mm",
                   "asymmetry_major_axis", "asymmetry_minor_axis", "compactness", "solidity", "colours",
                   "components", "mm_per_pixel")


def segment_paths(bundle: Path, inputs: list[Path], masks: Path, mm_per_pixel: float | None = None,
                  tta: str | None = None) -> list[dict]:
    """Rows of ``path, lesion, mask, <measurements>, share_<colour>..., error`` (a multi-task bundle
    adds ``predicted, confidence, p_<class>...``); each mask PNG (255
    on the lesion) is written into ``masks`` as ``<stem>_mask.png`` (``<stem>_2_mask.png`` and on
    where two inputs share a stem). ``lesion`` is "yes" or "no" (no pixel reached the threshold:
    an empty mask is still written, and the measurements are empty)."""
    card = read_card(bundle)
    if card.segmentation is None:
        raise ValueError(f"{card.path}: a {card.task} bundle has no mask head; `lesionlens predict` gives its "
                         "class probabilities without --masks")
    if mm_per_pixel is not None and not (math.isfinite(mm_per_pixel) and mm_per_pixel > 0):
        raise ValueError(f"--mm-per-pixel must be a positive number, got {mm_per_pixel}")
    model, pre, seg = load_model(card), card.preprocessing, card.segmentation
    tta = card.resolve_tta(tta)
    masks.mkdir(parents=True, exist_ok=True)
    items = collect_images(inputs)
    rows: list[dict] = [{"path": str(p), "error": err} for p, err in items]
    todo = [i for i, (_, err) in enumerate(items) if err is None]
    names: set[str] = set()
    for start in range(0, len(todo), CHUNK):
        decoded = []
        for i in todo[start:start + CHUNK]:
            try:
                full = np.asarray(load_rgb(items[i][0], draft_size=None), dtype=np.uint8)
                decoded.append((i, preprocess_image(items[i][0], pre), full))
            except (ImageDecodeError, OSError) as e:
                rows[i]["error"] = str(e)
        if not decoded:
            continue
        views = np.stack([v for _, v, _ in decoded])
        probabilities = predict_mask_probabilities(model, views, pre, tta=tta)
        if card.task == "multitask":
            _add_classes(rows, [i for i, _, _ in decoded], card, model, views, tta)
        for (i, _, full), p in zip(decoded, probabilities):
            lesion = find_lesion(p, full, pre, seg.threshold, seg.keep_largest, mm_per_pixel)
            path = masks / _mask_name(items[i][0], names)
            path.write_bytes(lesion.mask_png())
            rows[i].update(lesion="yes" if lesion.found else "no", mask=str(path))
            if lesion.found:
                measured = lesion.measurements.to_dict()
                rows[i].update({k: measured[k] for k in MEASURE_COLUMNS})
                rows[i].update({f"share_{c}": v for c, v in measured["colour_shares"].items()})
    return rows


def _add_classes(rows: list[dict], which: list[int], card, model, views: np.ndarray, tta: str) -> None:
    """A multi-task bundle's class answer beside the mask: the predicted class, its probability and
    each class's (the card's calibrated decision rule), as ``lesionlens predict`` gives a classifier's."""
    from lesionlens.inference import predict_logits
    from lesionlens.models.unet import ClassifierView

    probs = card.rule.probabilities(predict_logits(ClassifierView(model), views, card.preprocessing, tta=tta))
    for i, p in zip(which, probs):
        best = int(p.argmax())
        rows[i].update(predicted=card.classes[best], confidence=float(p[best]))
        rows[i].update({f"p_{c}": float(v) for c, v in zip(card.classes, p)})


def _mask_name(image: Path, taken: set[str]) -> str:
    stem, k = image.stem, 1
    name = f"{stem}_mask.png"
    while name in taken:
        k += 1
        name = f"{stem}_{k}_mask.png"
    taken.add(name)
    return name


def describe_masks(bundle: Path, tta: str | None = None) -> list[str]:
    """How the masks are made: the test-time augmentation and the card's threshold and clean-up."""
    card = read_card(bundle, verify=False)
    seg = card.segmentation
    used = card.resolve_tta(tta)
    return [f"test-time augmentation {used}" + (" (the bundle's default)" if tta is None else ""),
            f"a pixel is lesion where its probability is >= {seg.threshold:g}"
            + ("; only the largest region is kept, its holes filled" if seg.keep_largest else ""),
            "masks are at each image's own size; lengths in pixels of that image (mm with --mm-per-pixel)"]
