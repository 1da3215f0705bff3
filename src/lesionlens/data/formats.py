"""Readers for class folders and CSV tables, and the detection of which format a path is in.

The official HAM10000 and ISIC layouts are in :mod:`lesionlens.data.official`; they reuse the CSV
reader here with their own column names and class lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lesionlens.data.images import IMAGE_SUFFIXES
from lesionlens.data.labels import HAM10000_CLASSES, canonical
from lesionlens.data.table import DataIssue, ImageTable, make_table

IMAGE_COLUMNS = ("path", "image", "image_id", "image_name", "imagename", "filename", "file", "isic_id")
LABEL_COLUMNS = ("label", "dx", "class", "diagnosis", "target", "category")
PARTITION_COLUMNS = ("partition", "split", "set", "subset")
GROUP_COLUMNS = ("lesion_id", "patient_id", "patient", "group")

_PARTITION_NAMES = {
    "tr": "train", "train": "train", "training": "train",
    "dev": "val", "val": "val", "valid": "val", "validation": "val",
    "te": "test", "test": "test", "testing": "test",
}


def partition_name(value: str) -> str | None:
    return _PARTITION_NAMES.get(str(value).strip().lower())


class ImageFinder:
    """Finds a table's image by name in a list of folders, with or without the file extension."""

    def __init__(self, folders: list[Path]):
        self.folders = [f for f in dict.fromkeys(folders) if f.is_dir()]
        self._by_stem: dict[str, Path] | None = None

    def find(self, name: str) -> Path | None:
        p = Path(name)
        if p.is_absolute():
            return p if p.is_file() else None
        for folder in self.folders:
            if (folder / p).is_file():
                return folder / p
        if p.suffix.lower() in IMAGE_SUFFIXES:
            return None
        return self._index().get(p.name)

    def _index(self) -> dict[str, Path]:
        if self._by_stem is None:
            self._by_stem = {}
            for folder in self.folders:
                for f in sorted(folder.iterdir()):
                    if f.suffix.lower() in IMAGE_SUFFIXES:
                        self._by_stem.setdefault(f.stem, f)
        return self._by_stem

    def describe(self) -> str:
        return ", ".join(str(f) for f in self.folders) or "(no existing folder)"


@dataclass
class CsvLayout:
    """Which columns of a CSV mean what; None means detect it."""

    image: str | None = None
    label: str | None = None
    one_hot: tuple[str, ...] | None = None  # class columns holding 0/1
    partition: str | None = None
    group: str | None = None
    classes: tuple[str, ...] | None = None  # fixed class list; other labels are errors
    class_names: dict[str, str] | None = None  # one-hot column -> class name
    default_label: str | None = None  # every row's label when the table has no label columns (masks, regression)
    numeric: tuple[str, ...] = ()  # regression targets: never class columns, whatever their values


def read_csv_table(csv_path: Path, finder: ImageFinder, layout: CsvLayout | None = None,
                   fmt: str = "csv") -> ImageTable:
    """A CSV with an image column and a label column or one-hot class columns, optionally a
    partition (tr/dev/te, train/val/test) and a lesion or patient id column."""
    layout = layout or CsvLayout()
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ValueError(f"{csv_path}: cannot read the table: {e}") from e
    if df.empty:
        raise ValueError(f"{csv_path}: the table has no rows")
    columns = {c.strip().lower(): c for c in df.columns}
    image_col = _column(columns, layout.image, IMAGE_COLUMNS, csv_path, "image") or df.columns[0]
    partition_col = _column(columns, layout.partition, PARTITION_COLUMNS, csv_path, "partition")
    group_col = _column(columns, layout.group, GROUP_COLUMNS, csv_path, "group")
    label_col = None if layout.one_hot else _column(columns, layout.label, LABEL_COLUMNS, csv_path, "label")
    one_hot = list(layout.one_hot or [])
    if label_col is None and not one_hot:
        used = {image_col, partition_col, group_col, *(columns.get(n.strip().lower()) for n in layout.numeric)}
        one_hot = [c for c in df.columns if c not in used and _is_flag_column(df[c])]
        if not one_hot and layout.default_label:
            df = df.assign(**{"__label__": layout.default_label})
            label_col = "__label__"
        elif not one_hot:
            raise ValueError(
                f"{csv_path}: cannot find the labels: no label column (one of {list(LABEL_COLUMNS)}) "
                f"and no class columns holding 0/1; columns are {list(df.columns)}"
            )
    names = layout.class_names or {}
    if label_col is not None:
        classes = list(layout.classes) if layout.classes else _label_classes(df[label_col])
    else:
        classes = [names.get(c, c) for c in one_hot]

    records, issues, bad = [], [], set()
    source = str(csv_path)
    for i, r in enumerate(df.itertuples(index=False)):
        row = dict(zip(df.columns, r))
        line = i + 2
        image_id = str(row[image_col]).strip()
        problems = []
        if label_col is not None:
            label = str(row[label_col]).strip()
            if layout.classes and label not in classes:
                label = _match_class(label, classes)
            if not label or label not in classes:
                problems.append(f"unknown label {row[label_col]!r}; expected one of {classes}")
        else:
            label, problem = _one_hot_label(row, one_hot, classes)
            if problem:
                problems.append(problem)
        partition = None
        if partition_col is not None:
            partition = partition_name(row[partition_col])
            if partition is None:
                problems.append(
                    f"unknown partition {row[partition_col]!r}; use tr/dev/te or train/val/test"
                )
        path = finder.find(image_id) if image_id else None
        if not image_id:
            problems.append("empty image name")
        elif path is None:
            problems.append(f"image file not found (looked in {finder.describe()})")
        group = str(row[group_col]).strip() if group_col is not None else None
        records.append(dict(
            image_id=image_id, path=str(path) if path else "", label=label or None,
            group=group or None, partition=partition, source=source, row=line,
        ))
        if problems:
            bad.add(i)
            issues.extend(DataIssue(source, line, image_id, p) for p in problems)
    return make_table(records, classes, fmt, csv_path, issues, bad)


def _column(columns: dict[str, str], wanted: str | None, candidates: tuple[str, ...],
            csv_path: Path, what: str) -> str | None:
    if wanted is not None:
        if wanted.strip().lower() not in columns:
            raise ValueError(f"{csv_path}: no {what} column {wanted!r}; columns are {list(columns.values())}")
        return columns[wanted.strip().lower()]
    return next((columns[c] for c in candidates if c in columns), None)


def _is_flag_column(values: pd.Series) -> bool:
    filled = values[values.str.strip() != ""]
    return len(filled) > 0 and filled.map(_flag).notna().all()


def _flag(value: str) -> int | None:
    try:
        v = float(value)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None


def _one_hot_label(row: dict, columns: list[str], classes: list[str]) -> tuple[str | None, str | None]:
    flags = [_flag(str(row[c])) for c in columns]
    if any(f is None for f in flags):
        bad = [f"{c}={row[c]!r}" for c, f in zip(columns, flags) if f is None]
        return None, f"class columns must hold 0 or 1, got {', '.join(bad)}"
    on = [cls for cls, f in zip(classes, flags) if f == 1]
    if len(on) != 1:
        return None, f"expected exactly one class flag set to 1, found {len(on)} ({on or 'none'})"
    return on[0], None


def _label_classes(labels: pd.Series) -> list[str]:
    found = sorted({str(v).strip() for v in labels if str(v).strip()})
    if found and all(canonical(c) == c for c in found):  # diagnosis codes: keep the ISIC order
        return [c for c in HAM10000_CLASSES if c in found] + [c for c in found if c not in HAM10000_CLASSES]
    return found


def _match_class(label: str, classes: list[str]) -> str:
    """``MEL`` or ``melanoma`` for the class ``mel``; the label unchanged when nothing matches."""
    code = canonical(label)
    return code if code in classes else label


def read_folder(root: Path) -> ImageTable:
    """``root/<class>/*.jpg``, or ``root/<train|val|test>/<class>/*.jpg`` for fixed partitions."""
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        raise ValueError(f"{root}: no class folders found (expected {root}/<class>/<image files>)")
    partitioned = all(partition_name(d.name) for d in subdirs)
    parts = [(partition_name(d.name), d) for d in subdirs] if partitioned else [(None, root)]
    classes = sorted({c.name for _, p in parts for c in p.iterdir()
                      if c.is_dir() and not c.name.startswith(".")})
    records, issues, bad = [], [], set()
    for partition, part_dir in parts:
        for f in sorted(part_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                issues.append(DataIssue(str(f), None, None, "file is not inside a class folder; left out"))
        for cls in classes:
            cls_dir = part_dir / cls
            if not cls_dir.is_dir():
                continue
            for f in sorted(cls_dir.rglob("*")):
                if not f.is_file() or any(p.startswith(".") for p in f.relative_to(root).parts):
                    continue
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    bad.add(len(records))
                    issues.append(DataIssue(str(f), None, str(f.relative_to(root)),
                                            f"not an image file (suffix {f.suffix!r})"))
                records.append(dict(
                    image_id=str(f.relative_to(root).with_suffix("")), path=str(f), label=cls,
                    group=None, partition=partition, source=str(root), row=None,
                ))
    return make_table(records, classes, "folder", root, issues, bad)
