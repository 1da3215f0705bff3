"""Image / mask tables for segmentation: which mask goes with each image, checked before training.

Three layouts are read (``--data``, optionally ``--masks``):

- the ISIC 2017 Part 1 layout: the official folder, whose Part 3 CSVs list the images (with their
  melanoma / seborrheic-keratosis labels, for multi-task runs) and whose
  ``ISIC-2017_<Set>_Part1_GroundTruth`` folders hold the masks; the official partitions are kept;
- a folder pair: ``DATA/images/`` (flat, or class folders for multi-task runs) and ``DATA/masks/``,
  matched by file stem (``a.jpg`` takes ``a.png``, ``a_segmentation.png`` or ``a_mask.png``);
- a CSV with an image column and a mask column (``mask``, ``mask_path``, ``segmentation`` or
  ``mask_file``), and optionally a label, partition and group column, as for classification;
- or any classification layout with ``--masks FOLDER`` naming where its masks are.

The table is the classification :class:`~lesionlens.data.table.ImageTable` with a ``mask`` column.
An image without a mask, and a mask that is unreadable, not binary or of another shape than its
image, is a :class:`~lesionlens.data.table.DataIssue` naming the file, so the run's bad-input policy
(stop and list everything, or skip and write ``data_issues.csv``) treats masks like images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lesionlens.data.formats import CsvLayout, ImageFinder, read_csv_table, read_folder
from lesionlens.data.images import IMAGE_SUFFIXES, ImageDecodeError, Preprocessing
from lesionlens.data.load import read_table
from lesionlens.data.masks import MaskError, find_mask, isic2017_mask_folder, preprocess_mask, read_mask, upright_size
from lesionlens.data.table import ImageTable, check_table, make_table

MASK_COLUMNS = ("mask", "mask_path", "segmentation", "mask_file")
LESION = "lesion"  # the one class of a table that has masks but no labels


def read_mask_table(path: str | Path, fmt: str = "auto", images: str | Path | None = None,
                    group_column: str | None = None) -> tuple[ImageTable, list[Path]]:
    """The table of ``path`` (any layout above) and the folders to look for masks in; a CSV's own
    mask column is kept as the table's ``mask`` column. Masks are attached by :func:`attach_masks`
    once the rows that will be used are known (the ISIC test set has no masks)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir() and fmt in ("auto", "folder") and (path / "images").is_dir() and (path / "masks").is_dir():
        return _image_folder(path / "images"), [path / "masks"]
    if path.is_file() and fmt in ("auto", "csv") and _mask_column(path):
        return _mask_csv(path, images, group_column), []
    return read_table(path, fmt, images, group_column), []


def attach_masks(table: ImageTable, folders: list[Path]) -> ImageTable:
    """Fill the ``mask`` column (a CSV's own values are kept) by looking in ``folders`` and the
    ISIC 2017 Part 1 sibling of each image's folder; an image without one is flagged."""
    frame = table.frame
    if "mask" in frame:  # a CSV's mask column, already checked by its reader
        return table
    paths = []
    for pos, image in enumerate(frame["path"]):
        found = find_mask(Path(image), folders) if image else None
        if image and found is None:
            where = [*folders, isic2017_mask_folder(Path(image).parent)]
            table.flag(pos, "no lesion mask (looked in " + ", ".join(str(f) for f in where if f) + ")")
        paths.append(str(found) if found else "")
    frame["mask"] = paths
    return table


def load_masks(table: ImageTable, pre: Preprocessing) -> dict[str, np.ndarray]:
    """Each good row's mask at ``pre`` (bool S x S, aligned pixel for pixel with the cached image),
    by image id; an unreadable or misfitting mask flags its row."""
    masks = {}
    for pos, (image_id, image, mask) in enumerate(zip(table.frame["image_id"], table.frame["path"],
                                                      table.frame["mask"])):
        if pos in table.bad_rows:
            continue
        try:
            masks[image_id] = preprocess_mask(read_mask(Path(mask), upright_size(Path(image))), pre, Path(image))
        except MaskError as e:
            table.flag(pos, f"mask {e.path.name}: {e.problem}")
        except ImageDecodeError as e:
            table.flag(pos, str(e).removeprefix(f"{image}: "))
    return masks


def aligned_masks(table: ImageTable, masks: dict[str, np.ndarray]) -> np.ndarray:
    """The masks in the order of ``table``'s rows (N x S x S bool)."""
    return np.stack([masks[i] for i in table.frame["image_id"]])


def _image_folder(folder: Path) -> ImageTable:
    """``images/`` of a folder pair: class folders (labelled), or a flat folder (one class, ``lesion``)."""
    if any(d.is_dir() and not d.name.startswith(".") for d in folder.iterdir()):
        return check_table(read_folder(folder))
    records = [dict(image_id=f.stem, path=str(f), label=LESION, group=None, partition=None, source=str(folder),
                    row=None)
               for f in sorted(folder.iterdir())
               if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")]
    if not records:
        raise ValueError(f"{folder}: no image files")
    return check_table(make_table(records, [LESION], "folder", folder))


def _mask_column(csv_path: Path) -> str | None:
    try:
        header = pd.read_csv(csv_path, nrows=0).columns
    except (OSError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    return next((c for c in header if c.strip().lower() in MASK_COLUMNS), None)


def _mask_csv(csv_path: Path, images: str | Path | None, group_column: str | None) -> ImageTable:
    """A CSV with a mask column: the classification reader (labels optional), and each row's mask
    found like its image (relative to the CSV, its ``images/`` or ``masks/`` folder)."""
    folders = [Path(images)] if images else [csv_path.parent, csv_path.parent / "images"]
    table = check_table(read_csv_table(csv_path, ImageFinder(folders), CsvLayout(group=group_column,
                                                                                 default_label=LESION)))
    column = _mask_column(csv_path)
    values = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)[column].str.strip()
    mask_finder = _MaskFinder([csv_path.parent, csv_path.parent / "masks", *folders])
    masks = []
    for pos, (line, name) in enumerate(zip(table.frame["row"], values)):
        found = mask_finder.find(name) if name else None
        if found is None:
            table.flag(pos, f"mask {name!r} not found (looked in {mask_finder.describe()})" if name
                       else f"empty mask name in column {column!r}")
        masks.append(str(found) if found else "")
    table.frame["mask"] = masks
    return table


class _MaskFinder(ImageFinder):
    """An :class:`ImageFinder` for mask names (PNG masks beside JPEG images)."""

    def find(self, name: str) -> Path | None:
        p = Path(name)
        if p.is_absolute():
            return p if p.is_file() else None
        return next((f / p for f in self.folders if (f / p).is_file()), None)
