"""The official HAM10000 and ISIC challenge layouts.

- HAM10000: ``HAM10000_metadata.csv`` (``lesion_id, image_id, dx, ...``) with the images in
  ``images/`` or the release's ``HAM10000_images_part_1/2``; splits are grouped by ``lesion_id``.
- ISIC 2018 Task 3: ``ISIC2018_Task3_<Set>_GroundTruth.csv`` (``image, MEL, NV, BCC, AKIEC, BKL,
  DF, VASC``, one-hot) with images in ``ISIC2018_Task3_<Set>_Input/``; the training set's
  ``ISIC2018_Task3_Training_LesionGroupings.csv`` supplies lesion ids when present.
- ISIC 2017 Part 3: ``ISIC-2017_<Set>_Part3_GroundTruth.csv`` (``image_id, melanoma,
  seborrheic_keratosis``; a nevus is neither) with images in ``ISIC-2017_<Set>_Data/``.

Given the folder, every set found is read, its partition taken from its name.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pandas as pd

from lesionlens.data.formats import CsvLayout, ImageFinder, read_csv_table
from lesionlens.data.labels import HAM10000_CLASSES
from lesionlens.data.table import DataIssue, ImageTable, make_table

ISIC2018_COLUMNS = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
ISIC2017_CLASSES = ("melanoma", "seborrheic_keratosis", "nevus")

_HAM_CSV = "HAM10000_metadata.csv"
_ISIC2018 = re.compile(r"ISIC2018_Task3_(Training|Validation|Test)_GroundTruth\.csv$")
_ISIC2017 = re.compile(r"ISIC-2017_(Training|Validation|Test_v2|Test)_Part3_GroundTruth\.csv$")
_SET_PARTITION = {"Training": "train", "Validation": "val", "Test": "test", "Test_v2": "test"}


def detect_official(path: Path) -> str | None:
    if path.is_dir():
        if (path / _HAM_CSV).is_file():
            return "ham10000"
        if _official_csvs(path, _ISIC2017):
            return "isic2017"
        if _official_csvs(path, _ISIC2018):
            return "isic2018"
        return None
    if path.suffix.lower() != ".csv":
        return None
    try:
        header = {c.strip().lower() for c in pd.read_csv(path, nrows=0).columns}
    except (OSError, pd.errors.ParserError, UnicodeDecodeError):
        return None
    if {"lesion_id", "image_id", "dx"} <= header:
        return "ham10000"
    if {"image_id", "melanoma", "seborrheic_keratosis"} <= header:
        return "isic2017"
    if {"image"} | {c.lower() for c in ISIC2018_COLUMNS} <= header:
        return "isic2018"
    return None


def read_ham10000(path: Path, images: Path | None = None) -> ImageTable:
    csv_path = path / _HAM_CSV if path.is_dir() else path
    root = csv_path.parent
    folders = [images] if images else [
        root / "images", root / "HAM10000_images_part_1", root / "HAM10000_images_part_2",
        root / "HAM10000_images", root,
    ]
    layout = CsvLayout(image="image_id", label="dx", group="lesion_id", classes=HAM10000_CLASSES)
    return read_csv_table(csv_path, ImageFinder(folders), layout, fmt="ham10000")


def read_isic2018(path: Path, images: Path | None = None) -> ImageTable:
    names = {c: c.lower() for c in ISIC2018_COLUMNS}
    layout = CsvLayout(image="image", one_hot=ISIC2018_COLUMNS, class_names=names)
    tables = []
    for csv_path, partition in _sets(path, _ISIC2018):
        table = read_csv_table(csv_path, ImageFinder(_image_folders(csv_path, images)), layout, "isic2018")
        table = _with_partition(table, partition)
        tables.append(_with_lesion_groups(table, csv_path))
    return _concat(tables, path)


def read_isic2017(path: Path, images: Path | None = None) -> ImageTable:
    tables = []
    for csv_path, partition in _sets(path, _ISIC2017):
        finder = ImageFinder(_image_folders(csv_path, images))
        tables.append(_with_partition(_read_isic2017_csv(csv_path, finder), partition))
    return _concat(tables, path)


def _read_isic2017_csv(csv_path: Path, finder: ImageFinder) -> ImageTable:
    """Two flags, melanoma and seborrheic_keratosis; a nevus has neither."""
    df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    missing = {"image_id", "melanoma", "seborrheic_keratosis"} - set(df.columns)
    if missing:
        raise ValueError(f"{csv_path}: missing columns {sorted(missing)} of the ISIC 2017 layout")
    records, issues, bad = [], [], set()
    for i, r in df.iterrows():
        line, image_id = i + 2, r["image_id"].strip()
        try:
            mel, sk = float(r["melanoma"]), float(r["seborrheic_keratosis"])
        except ValueError:
            mel = sk = float("nan")
        label = {(1.0, 0.0): "melanoma", (0.0, 1.0): "seborrheic_keratosis", (0.0, 0.0): "nevus"}.get((mel, sk))
        path = finder.find(image_id)
        problems = []
        if label is None:
            problems.append(f"flags melanoma={r['melanoma']!r}, seborrheic_keratosis={r['seborrheic_keratosis']!r}"
                            " are not one of 1/0, 0/1, 0/0")
        if path is None:
            problems.append(f"image file not found (looked in {finder.describe()})")
        records.append(dict(image_id=image_id, path=str(path or ""), label=label, group=None,
                            partition=None, source=str(csv_path), row=line))
        if problems:
            bad.add(i)
            issues.extend(DataIssue(str(csv_path), line, image_id, p) for p in problems)
    return make_table(records, ISIC2017_CLASSES, "isic2017", csv_path, issues, bad)


def _official_csvs(folder: Path, pattern: re.Pattern) -> list[Path]:
    found = [p for p in folder.glob("*.csv") if pattern.search(p.name)]
    found += [p for p in folder.glob("*/*.csv") if pattern.search(p.name)]
    return sorted(found)


def _sets(path: Path, pattern: re.Pattern) -> list[tuple[Path, str | None]]:
    """The ground-truth CSVs of a folder with their partitions, or the single CSV given."""
    if path.is_dir():
        csvs = _official_csvs(path, pattern)
        if not csvs:
            raise ValueError(f"{path}: no official ground-truth CSV found")
        sets = [(p, _SET_PARTITION[pattern.search(p.name).group(1)]) for p in csvs]
        return sorted(sets, key=lambda s: ("train", "val", "test").index(s[1]))
    return [(path, None)]


def _image_folders(csv_path: Path, images: Path | None) -> list[Path]:
    """Where an official ground truth's images are: beside it, or in the matching sibling folder."""
    if images is not None:
        return [images]
    stem = csv_path.stem
    siblings = {stem.replace("_Part3_GroundTruth", "_Data"), stem.replace("_GroundTruth", "_Input")}
    if stem.endswith("_Test_v2_Part3_GroundTruth"):
        siblings.add(stem.replace("_Test_v2_Part3_GroundTruth", "_Test_Data"))
    folders = []
    for base in (csv_path.parent, csv_path.parent.parent):
        folders += [base / s for s in sorted(siblings)]
    return folders + [csv_path.parent, csv_path.parent / "images"]


def _with_partition(table: ImageTable, partition: str | None) -> ImageTable:
    if partition is None:
        return table
    frame = table.frame.copy()
    frame["partition"] = partition
    return replace(table, frame=frame)


def _with_lesion_groups(table: ImageTable, csv_path: Path) -> ImageTable:
    groupings = [csv_path.parent / "ISIC2018_Task3_Training_LesionGroupings.csv",
                 csv_path.parent.parent / "ISIC2018_Task3_Training_LesionGroupings.csv"]
    found = next((g for g in groupings if g.is_file()), None)
    if found is None or "Training" not in csv_path.name:
        return table
    lesions = pd.read_csv(found, dtype=str).set_index("image")["lesion_id"]
    frame = table.frame.copy()
    frame["group"] = frame["image_id"].map(lesions)
    return replace(table, frame=frame)


def _concat(tables: list[ImageTable], source: Path) -> ImageTable:
    """Join the sets of one collection into one table."""
    if len(tables) == 1:
        return tables[0]
    offset, records, issues, bad = 0, [], [], set()
    for t in tables:
        records += t.frame.to_dict("records")
        issues += t.issues
        bad |= {offset + b for b in t.bad_rows}
        offset += len(t)
    return make_table(records, tables[0].classes, tables[0].format, source, issues, bad)
