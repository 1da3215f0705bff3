"""The bundle's split file (``split.csv``): every image of the training data, its partition, label,
group and content hash. Written once by training, read here by everything else.

It is also a CSV that ``--data`` reads like any labelled table, so a later run can train on exactly
the same split: image paths are written absolute, because a CSV's relative paths are read relative
to the CSV's own folder, not to where training ran. Torch- and pandas-free to read.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lesionlens.bundle.schema import BundleError

if TYPE_CHECKING:  # a type only: reading a split needs no pandas
    from lesionlens.data.table import ImageTable

SPLIT_FILE = "split.csv"
COLUMNS = ("image_id", "partition", "label", "group", "sha256", "path")
# Written where training computed it (its leakage check), and optional to read: older bundles lack it.
OPTIONAL = ("phash",)  # 256-bit perceptual hash of the upright image, hex (lesionlens.quality)


@dataclass(frozen=True)
class SplitRow:
    image_id: str
    partition: str  # train, val or test
    label: str
    group: str  # the lesion (or patient) the image belongs to; empty where the data had none
    sha256: str
    path: str  # absolute, as written at training time
    phash: str = ""  # empty in bundles written before the leakage check


def write_split(table: ImageTable, path: Path) -> Path:
    frame = table.frame[list(COLUMNS) + [c for c in OPTIONAL if c in table.frame]].copy()
    frame["path"] = [str(Path(p).resolve()) if p else p for p in frame["path"]]
    frame.to_csv(path, index=False)
    return path


def read_split(path: Path) -> list[SplitRow]:
    """The rows of a split file (``path`` is the file or the bundle folder)."""
    path = Path(path)
    path = path / SPLIT_FILE if path.is_dir() else path
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise BundleError(f"{path}: not a split file: no column {', '.join(missing)}")
            present = [c for c in COLUMNS + OPTIONAL if c in (reader.fieldnames or [])]
            return [SplitRow(**{c: row[c] or "" for c in present}) for row in reader]
    except OSError as e:
        raise BundleError(f"{path}: cannot read the split file: {e.strerror or e}") from e


def hashes_by_partition(rows: list[SplitRow]) -> dict[str, set[str]]:
    """Partition -> the content hashes of its images (to find images a bundle was trained on)."""
    out: dict[str, set[str]] = {}
    for row in rows:
        if row.sha256:
            out.setdefault(row.partition, set()).add(row.sha256)
    return out


def fingerprint(table: ImageTable) -> str:
    """sha256 over every image's content hash, label and partition, in a fixed order."""
    rows = sorted(zip(table.frame["sha256"], table.frame["label"], table.frame["partition"]))
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def split_counts(table: ImageTable) -> dict[str, dict[str, int]]:
    """Partition -> class -> images."""
    counts = table.frame.groupby(["partition", "label"]).size()
    return {p: {c: int(counts.get((p, c), 0)) for c in table.classes}
            for p in sorted(table.frame["partition"].unique())}
