"""From a path to a checked, decoded, split table: the one entry point every command uses.

``read_table`` detects the format and reads it; ``prepare`` decodes every image through the cache,
records what could not be read, and applies the user's bad-input policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lesionlens.config import DataFormat, check_covers, choices
from lesionlens.data.cache import DecodedImages, decode_images
from lesionlens.data.formats import CsvLayout, ImageFinder, read_csv_table, read_folder
from lesionlens.data.images import Preprocessing
from lesionlens.data.official import detect_official, read_ham10000, read_isic2017, read_isic2018
from lesionlens.data.table import ImageTable, check_table, resolve_issues


def detect_format(path: Path) -> str:
    """Name the format of ``path`` from its file names and, for a CSV, its header."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    official = detect_official(path)
    if official:
        return official
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".csv", ".tsv", ".txt"):
        return "csv"
    raise ValueError(f"{path}: not a folder or a CSV table; use --format to say which format it is")


def read_table(path: str | Path, fmt: str = "auto", images: str | Path | None = None,
               group_column: str | None = None, targets: tuple[str, ...] = ()) -> ImageTable:
    """Read any supported layout into an :class:`ImageTable`; problems are recorded, not raised.
    ``targets`` names a regression's numeric columns: a CSV never reads them as class columns, and
    one without a label column is read with the one label ``all``."""
    path = Path(path).expanduser()
    images = Path(images).expanduser() if images else None
    fmt = detect_format(path) if fmt == "auto" else fmt
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {choices(DataFormat)}")
    if fmt == "csv" and targets:
        return check_table(_read_csv(path, images, group_column, targets))
    return check_table(READERS[fmt](path, images, group_column))


def _read_folder(path: Path, images: Path | None, group_column: str | None) -> ImageTable:
    if not path.is_dir():
        raise ValueError(f"{path}: the folder format needs a folder of class folders")
    return read_folder(path)


def _read_csv(path: Path, images: Path | None, group_column: str | None,
              targets: tuple[str, ...] = ()) -> ImageTable:
    if path.is_dir():
        raise ValueError(f"{path}: the csv format needs a CSV file, not a folder")
    folders = [images] if images else [path.parent, path.parent / "images"]
    return read_csv_table(path, ImageFinder(folders), CsvLayout(group=group_column, default_label="all" if targets else None,
                                                                 numeric=targets))


# format -> reader(path, images folder, group column); "auto" is detected first
READERS = {
    "folder": _read_folder,
    "csv": _read_csv,
    "ham10000": lambda path, images, group: read_ham10000(path, images),
    "isic2018": lambda path, images, group: read_isic2018(path, images),
    "isic2017": lambda path, images, group: read_isic2017(path, images),
}
check_covers(READERS, DataFormat, "data reader", besides=("auto",))


@dataclass
class PreparedData:
    """A table whose rows all have a decoded image: ``images.array[table.frame.cache_row]``."""

    table: ImageTable
    images: DecodedImages

    def rows(self, partition: str | None = None) -> np.ndarray:
        """Positions in ``table`` of one partition (all rows when None)."""
        if partition is None:
            return np.arange(len(self.table))
        return np.flatnonzero(self.table.frame["partition"].to_numpy() == partition)


def prepare(table: ImageTable, pre: Preprocessing, on_bad_input: str = "stop",
            cache_dir: str | Path | None = None, report: Path | None = None,
            progress: bool = True) -> PreparedData:
    """Decode the table's images at ``pre``'s size (cached), flag the unreadable ones, and stop or
    skip according to ``on_bad_input``; ``report`` receives the list of problems as CSV."""
    good = [i for i in range(len(table)) if i not in table.bad_rows]
    paths = table.paths
    decoded = decode_images([paths[i] for i in good], pre, cache_dir, progress=progress)
    for j, why in sorted(decoded.failures.items()):
        table.flag(good[j], why)
    cache_row = np.full(len(table), -1, dtype=np.int64)
    cache_row[good] = np.arange(len(good))
    digests: list[str | None] = [None] * len(table)
    for j, i in enumerate(good):
        digests[i] = decoded.digests[j]
    table.frame["cache_row"] = cache_row
    table.frame["sha256"] = digests
    table = resolve_issues(table, on_bad_input, report)
    return PreparedData(table, decoded)
