"""From a CSV of NIfTI volumes to checked, preprocessed volumes: the volume twin of
:mod:`lesionlens.data.load`.

    CSV (path, label[, mask][, group][, partition]) -> ImageTable (the 2D readers' table, format
    "volumes") -> every volume (and mask) read and preprocessed (lesionlens.data.volumes) into one
    in-memory array -> the user's bad-input policy (stop and list every problem, or skip those rows)

The table is the one the 2D readers make (:class:`~lesionlens.data.table.ImageTable`), read by the
same CSV reader, so labels, partitions, groups, splits, the split file and the fingerprint work as
for images. A volume that cannot be used (corrupt, not 3D, NaN voxels, a mask that does not fit) is
a :class:`~lesionlens.data.table.DataIssue` naming the CSV line and the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lesionlens.data.formats import IMAGE_COLUMNS
from lesionlens.data.load import read_table
from lesionlens.data.pairs import read_mask_table
from lesionlens.data.table import ImageTable, resolve_issues
from lesionlens.data.volumes import VolumeError, VolumePreprocessing, is_volume_path, preprocess_pair, preprocess_volume
from lesionlens.digest import file_digest

VOLUME_FORMAT = "volumes"


def is_volume_table(path: str | Path) -> bool:
    """Whether ``path`` is a CSV whose image column names NIfTI files (judged on its first rows)."""
    path = Path(path).expanduser()
    if not path.is_file() or path.suffix.lower() not in (".csv", ".tsv", ".txt"):
        return False
    try:
        head = pd.read_csv(path, dtype=str, nrows=20, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError):
        return False
    columns = {c.strip().lower(): c for c in head.columns}
    column = next((columns[c] for c in IMAGE_COLUMNS if c in columns), head.columns[0] if len(head.columns) else None)
    values = [v for v in head[column].tolist() if v.strip()] if column is not None else []
    return bool(values) and all(is_volume_path(v) for v in values)


def read_volume_table(path: str | Path, masks: bool = False, group_column: str | None = None,
                      targets: tuple[str, ...] = ()) -> ImageTable:
    """The CSV's rows (with a ``mask`` column when ``masks``: segmentation; with ``targets``, a
    regression's numeric columns, then read by :func:`lesionlens.data.targets.store_targets`), paths found
    relative to the CSV; problems are recorded, not raised."""
    path = Path(path).expanduser()
    if masks:
        table, _ = read_mask_table(path, "csv", None, group_column)
        if "mask" not in table.frame:
            raise ValueError(f"{path}: segmentation needs a mask column (mask, mask_path, segmentation or mask_file)")
    else:
        table = read_table(path, "csv", None, group_column, targets=targets)
    table.format = VOLUME_FORMAT
    return table


@dataclass
class VolumeData:
    """A table whose rows all have a preprocessed volume: ``volumes[table.frame.cache_row]`` (and the
    mask at the same row of ``masks`` for segmentation)."""

    table: ImageTable
    volumes: np.ndarray  # N x D x H x W float32
    masks: np.ndarray | None  # N x D x H x W bool

    def rows(self, partition: str | None = None) -> np.ndarray:
        if partition is None:
            return np.arange(len(self.table))
        return np.flatnonzero(self.table.frame["partition"].to_numpy() == partition)

    def arrays(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The volumes (and masks) of table rows ``rows``."""
        cache = self.table.frame["cache_row"].to_numpy()[rows]
        return self.volumes[cache], None if self.masks is None else self.masks[cache]


def prepare_volumes(table: ImageTable, pre: VolumePreprocessing, on_bad_input: str = "stop",
                    report: Path | None = None) -> VolumeData:
    """Read and preprocess every good row's volume (and mask, where the table has a mask column),
    flag those that cannot be used, and stop or skip according to ``on_bad_input``."""
    with_masks = "mask" in table.frame
    volumes, masks, digests = [], [], [None] * len(table)
    cache_row = np.full(len(table), -1, dtype=np.int64)
    for pos in range(len(table)):
        if pos in table.bad_rows:
            continue
        image = Path(table.frame["path"].iloc[pos])
        try:
            if with_masks:
                mask_path = Path(table.frame["mask"].iloc[pos])
                x, m = preprocess_pair(image, mask_path, pre)
                masks.append(m)
            else:
                x = preprocess_volume(image, pre)
            digests[pos] = file_digest(image)
        except VolumeError as e:
            table.flag(pos, e.problem if e.path == image else f"mask {e.path}: {e.problem}")
            continue
        except OSError as e:
            table.flag(pos, f"cannot read file: {e}")
            continue
        cache_row[pos] = len(volumes)
        volumes.append(x)
    table.frame["cache_row"] = cache_row
    table.frame["sha256"] = digests
    table = resolve_issues(table, on_bad_input, report)
    shape = (0, *pre.size)
    return VolumeData(table, np.stack(volumes) if volumes else np.zeros(shape, np.float32),
                      (np.stack(masks) if masks else np.zeros(shape, bool)) if with_masks else None)
