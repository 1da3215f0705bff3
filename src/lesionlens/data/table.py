"""The labelled image table every reader produces, and the record of what was wrong with the input.

A reader never drops a row. Each problem (missing file, unreadable image, unknown label, duplicate
id, class with no images) becomes a :class:`DataIssue` naming the file and row; :func:`resolve_issues`
then stops with all of them listed, or drops exactly those rows and says so.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Columns of ImageTable.frame. "row" is the line in the source file (header = line 1) or None.
COLUMNS = ("image_id", "path", "label", "group", "partition", "source", "row")
PARTITIONS = ("train", "val", "test")


@dataclass(frozen=True)
class DataIssue:
    source: str  # the file the problem is in: the CSV table, or the image itself
    row: int | None  # line in ``source`` (1-based, header included), when it is a table
    image_id: str | None
    problem: str

    def __str__(self) -> str:
        where = self.source if self.row is None else f"{self.source}:{self.row}"
        return f"{where}: {self.image_id}: {self.problem}" if self.image_id else f"{where}: {self.problem}"


class DataError(ValueError):
    """Input that cannot be used as it is; lists every problem found, not only the first."""

    def __init__(self, issues: list[DataIssue], hint: str = ""):
        self.issues = list(issues)
        shown = "\n".join(f"  {i}" for i in self.issues[:20])
        more = f"\n  ... and {len(self.issues) - 20} more" if len(self.issues) > 20 else ""
        super().__init__(f"{len(self.issues)} problem(s) in the input:\n{shown}{more}{hint}")


@dataclass
class ImageTable:
    """Images with their labels; ``classes`` fixes the order of the model's outputs."""

    frame: pd.DataFrame
    classes: list[str]
    format: str
    source: Path
    issues: list[DataIssue] = field(default_factory=list)
    bad_rows: set[int] = field(default_factory=set)  # frame positions the issues refer to

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> list[Path]:
        return [Path(p) for p in self.frame["path"]]

    def targets(self) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return self.frame["label"].map(index).to_numpy(dtype=np.int64)

    def class_counts(self) -> dict[str, int]:
        counts = self.frame["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.classes}

    def has_partitions(self) -> bool:
        return self.frame["partition"].notna().any()

    def subset(self, mask: np.ndarray | pd.Series) -> "ImageTable":
        """Rows where ``mask`` is true; issues of the dropped rows go with them."""
        mask = np.asarray(mask, dtype=bool)
        kept = np.flatnonzero(mask)
        remap = {int(old): new for new, old in enumerate(kept)}
        return replace(
            self,
            frame=self.frame.iloc[kept].reset_index(drop=True),
            bad_rows={remap[r] for r in self.bad_rows if r in remap},
        )

    def flag(self, position: int, problem: str) -> None:
        """Record a problem with the image at frame position ``position``."""
        r = self.frame.iloc[position]
        row = None if pd.isna(r["row"]) else int(r["row"])
        source = str(r["source"]) if row is not None else str(r["path"])
        self.issues.append(DataIssue(source, row, str(r["image_id"]), problem))
        self.bad_rows.add(position)


def make_table(records: list[dict], classes: list[str], fmt: str, source: Path,
               issues: list[DataIssue] | None = None, bad_rows: set[int] | None = None) -> ImageTable:
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS))
    frame["row"] = frame["row"].astype("Int64")
    return ImageTable(frame, list(classes), fmt, Path(source), list(issues or []), set(bad_rows or ()))


def check_table(table: ImageTable) -> ImageTable:
    """Add the issues only the whole table shows: duplicate ids, classes without images."""
    _check_duplicates(table)
    _check_empty_classes(table)
    return table


def _check_duplicates(table: ImageTable) -> None:
    first: dict[str, int] = {}
    for pos, image_id in enumerate(table.frame["image_id"]):
        if image_id in first:
            other = table.frame.iloc[first[image_id]]
            at = f"line {other['row']}" if not pd.isna(other["row"]) else str(other["path"])
            table.flag(pos, f"duplicate image id (first seen at {at})")
        else:
            first[image_id] = pos


def _check_empty_classes(table: ImageTable) -> None:
    good = table.frame.drop(index=list(table.bad_rows))
    present = set(good["label"].dropna())
    for c in table.classes:
        if c not in present:
            table.issues.append(DataIssue(str(table.source), None, None, f"class {c!r} has no images"))


def resolve_issues(table: ImageTable, policy: str, report: Path | None = None) -> ImageTable:
    """Apply the user's choice: ``stop`` raises on any issue, ``skip`` drops the bad rows and
    classes without images, logs a summary and writes every issue to ``report`` (CSV)."""
    if not table.issues:
        return table
    if report is not None:
        write_issues(table.issues, report)
    if policy == "stop":
        where = f"\nThe full list is in {report}." if report is not None else ""
        raise DataError(
            table.issues,
            hint=f"{where}\nFix the input, or pass --on-bad-input skip to leave these out and continue.",
        )
    kept = table.subset(~np.isin(np.arange(len(table)), sorted(table.bad_rows)))
    present = set(kept.frame["label"].dropna())
    classes = [c for c in table.classes if c in present]
    dropped = [c for c in table.classes if c not in present]
    log.warning(
        "skipped %d of %d images and %d empty class(es) %s because of %d problem(s)%s; first: %s",
        len(table) - len(kept), len(table), len(dropped), dropped, len(table.issues),
        f" (all listed in {report})" if report is not None else "", table.issues[0],
    )
    return replace(kept, classes=classes, issues=list(table.issues), bad_rows=set())


def write_issues(issues: list[DataIssue], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["source", "row", "image_id", "problem"])
        for i in issues:
            w.writerow([i.source, "" if i.row is None else i.row, i.image_id or "", i.problem])
