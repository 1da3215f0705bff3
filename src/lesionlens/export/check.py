"""The real images an export is checked (and an INT8 model calibrated) on: the ones the user names,
or the bundle's own validation (or training) images listed in its split file."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.bundle.card import Card
from lesionlens.bundle.split import read_split
from lesionlens.data.files import collect_images
from lesionlens.data.images import ImageDecodeError, preprocess_image

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    pass


@dataclass(frozen=True)
class CheckImages:
    """Decoded images (N x H x W x 3 uint8) with their labels where known, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None  # class indices, -1 where unknown
    source: str


def find_check_images(card: Card, images: list[Path] | None, limit: int, partition: str = "val") -> CheckImages:
    """``images`` (files or folders) when given, else the bundle's own ``partition`` images listed
    in its split file (paths as written at training time, or relative to the bundle)."""
    labels: list[int] = []
    if images:
        paths = [p for p, err in collect_images(images) if err is None]
        source = ", ".join(str(p) for p in images)
    else:
        paths, labels = _split_images(card, partition)
        source = f"{card.path / card.files.get('split', 'split.csv')} ({partition} partition)"
    decoded, kept = [], []
    for i, path in enumerate(paths):
        if len(decoded) == limit:
            break
        try:
            decoded.append(preprocess_image(path, card.preprocessing))
            kept.append(labels[i] if labels else -1)
        except (ImageDecodeError, OSError) as e:
            log.warning("skipping %s: %s", path, e)
    if not decoded:
        where = "the images given" if images else f"{card.path}/split.csv ({partition} rows whose files exist here)"
        raise ExportError(f"no readable image in {where}; the export must be checked on real images: pass --images")
    y = np.asarray(kept)
    return CheckImages(np.stack(decoded), None if (y < 0).all() else y, f"{len(decoded)} images from {source}")


def _split_images(card: Card, partition: str) -> tuple[list[Path], list[int]]:
    split = card.file("split")
    if split is None:
        return [], []
    index = {c: i for i, c in enumerate(card.classes)}
    paths, labels = [], []
    for row in read_split(split):
        if row.partition != partition:
            continue
        for candidate in (Path(row.path), card.path / row.path):
            if candidate.is_file():
                paths.append(candidate)
                labels.append(index.get(row.label, -1))
                break
    return paths, labels
