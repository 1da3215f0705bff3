"""The images ``lesionlens explain`` looks at: image files, or a data set (any layout ``train``
reads) with labels, groups and metadata; lesion masks beside them where there are any.

Images are decoded exactly as the bundle's network sees them (its preprocessing, through the
decoded-image cache for a data set), and masks with the same geometry. Nothing is dropped quietly:
an unreadable image stops the run (or, with ``on_bad_input="skip"``, is left out and counted), and
with an explicit mask folder every image must have its mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lesionlens.data.images import ImageDecodeError, Preprocessing, preprocess_image
from lesionlens.data.table import DataError, DataIssue


@dataclass
class Images:
    """The images explained, decoded at the bundle's preprocessing, with what is known of them."""

    array: np.ndarray  # N x H x W x 3 uint8
    ids: list[str]
    labels: list[str] | None = None  # class names, where the data has labels
    masks: np.ndarray | None = None  # N x H x W bool, aligned; rows without a mask are all False
    has_mask: np.ndarray | None = None  # N bool
    groups: list[str] | None = None
    metadata: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.array)


def from_files(paths: list[Path], pre: Preprocessing, masks: Path | None = None) -> Images:
    """Image files, each decoded for the bundle; with ``masks`` (a folder matched by file stem, or
    the ISIC 2017 Part 1 folder beside the images) every image needs its mask."""
    issues, decoded = [], []
    for p in paths:
        try:
            decoded.append(preprocess_image(Path(p), pre))
        except (ImageDecodeError, OSError) as e:
            issues.append(DataIssue(str(p), None, None, str(e).removeprefix(f"{p}: ")))
    if issues:
        raise DataError(issues)
    if not decoded:
        raise ValueError("no images to explain")
    images = Images(np.stack(decoded), [Path(p).name for p in paths], source=f"{len(paths)} image file(s)")
    if masks is not None:
        _attach_masks(images, [Path(p) for p in paths], pre, masks, required=True)
    return images


def from_data(data: str | Path, pre: Preprocessing, fmt: str = "auto", images: str | Path | None = None,
              partition: str | None = None, masks: Path | None = None, probes: tuple[str, ...] = (),
              on_bad_input: str = "stop", cache_dir: str | None = None, progress: bool = True,
              image_ids: set[str] | None = None) -> Images:
    """A labelled data set (optionally one ``partition``), with its groups, its metadata (sex, age,
    site where the data has them, and the ``probes`` columns) and lesion masks: those of ``masks``,
    or of the ISIC 2017 Part 1 layout when the data is laid out that way. ``image_ids`` keeps only
    those images (e.g. a bundle's validation split, with the metadata of the original table)."""
    from lesionlens.data.load import prepare, read_table
    from lesionlens.data.metadata import read_columns, read_metadata

    table = read_table(data, fmt, images)
    if partition is not None:
        table = table.subset((table.frame["partition"] == partition).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data}: no images in the {partition!r} partition")
    if image_ids is not None:
        table = table.subset(table.frame["image_id"].astype(str).isin(image_ids).to_numpy())
        if len(table) == 0:
            raise ValueError(f"{data}: none of the {len(image_ids)} asked image ids")
    prepared = prepare(table, pre, on_bad_input, cache_dir, progress=progress)
    table = prepared.table
    rows = prepared.images.array[table.frame["cache_row"].to_numpy()]
    frame = table.frame
    metadata = {k: v for k, v in read_metadata(table).items() if any(v)}
    if probes:
        metadata.update(read_columns(table, list(probes)))
    groups = [str(g) if g is not None and g == g else "" for g in frame["group"]]
    out = Images(rows, [str(i) for i in frame["image_id"]], [str(v) for v in frame["label"]], groups=groups,
                 metadata=metadata, source=f"{Path(data).name}" + (f", partition {partition}" if partition else ""))
    left_out = len(table.bad_rows) if hasattr(table, "bad_rows") else 0
    if left_out:
        out.notes.append(f"{left_out} unreadable image(s) left out (on_bad_input=skip)")
    _attach_masks(out, [Path(p) for p in table.paths], pre, masks, required=masks is not None)
    return out


def _attach_masks(images: Images, paths: list[Path], pre: Preprocessing, folder: Path | None, required: bool) -> None:
    """Masks for the images that have one (all of them when ``required``); none found is no masks."""
    from lesionlens.data.masks import (
        MaskError,
        pair_images,
        preprocess_mask,
        read_mask,
        upright_size,
    )

    pairs = pair_images(paths, [Path(folder)] if folder is not None else [])
    if required and pairs.missing:
        raise DataError(pairs.missing, hint=f"\nevery image needs a mask in {folder} (matched by file stem)")
    if not pairs.pairs:
        return
    index = {p: i for i, p in enumerate(paths)}
    masks = np.zeros(images.array.shape[:3], bool)
    has = np.zeros(len(paths), bool)
    issues = []
    for pair in pairs.pairs:
        i = index[Path(pair.image)]
        try:
            masks[i] = preprocess_mask(read_mask(pair.mask, upright_size(pair.image)), pre, Path(pair.image))
        except MaskError as e:
            issues.append(DataIssue(str(e.path), None, None, e.problem))
            continue
        has[i] = True
    if issues:
        raise DataError(issues)
    images.masks, images.has_mask = masks, has
    if not has.all():
        images.notes.append(f"lesion masks for {int(has.sum()):,} of {len(has):,} images; lesion focus uses those")
