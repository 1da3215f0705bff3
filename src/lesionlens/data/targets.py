"""Numeric targets for regression: the named columns of a table's source CSV, checked per row.

The readers keep only what classification needs; a regression run names its columns
(``--target age``, ``--target x0,y0,x1,y1``) and this module reads them back from the CSV each row
came from (:func:`lesionlens.data.metadata.read_columns`). A value that is empty, not a number or
not finite is a :class:`~lesionlens.data.table.DataIssue` naming the file, the line and the
column, like any other bad input: the run stops and lists them all, or skips exactly those rows.
"""

from __future__ import annotations

import math

import numpy as np

from lesionlens.data.metadata import read_columns
from lesionlens.data.table import ImageTable


def target_columns(spec: str | None) -> tuple[str, ...]:
    """``"x0, y0,x1,y1"`` -> ``("x0", "y0", "x1", "y1")``; an empty or repeated name is an error."""
    names = tuple(n.strip() for n in (spec or "").split(","))
    if not spec or any(not n for n in names):
        raise ValueError(f"--target: expected one or more column names separated by commas, got {spec!r}")
    if len(set(n.lower() for n in names)) != len(names):
        raise ValueError(f"--target: a column is named twice in {spec!r}")
    return names


def attach_targets(table: ImageTable, columns: tuple[str, ...]) -> np.ndarray:
    """The targets of ``table``'s rows (N x K float64, NaN where unusable); each unusable value
    flags its row with the file, line and column."""
    values = read_columns(table, list(columns))
    out = np.full((len(table), len(columns)), np.nan)
    for k, column in enumerate(columns):
        for pos, text in enumerate(values[column]):
            number = _number(text)
            if number is None:
                why = "is empty" if not text else f"is not a number ({text!r})"
                table.flag(pos, f"target {column!r} {why}")
            else:
                out[pos, k] = number
    return out


TARGET_PREFIX = "target:"  # the table's frame columns that carry the targets, one per target


def store_targets(table: ImageTable, columns: tuple[str, ...]) -> None:
    """Read the targets (:func:`attach_targets`) into ``table``'s frame, so rows dropped later (a bad
    image, a split) take their targets with them; :func:`stored_targets` reads them back."""
    values = attach_targets(table, columns)
    for k, column in enumerate(columns):
        table.frame[TARGET_PREFIX + column] = values[:, k]


def stored_targets(table: ImageTable, columns: tuple[str, ...] | list[str]) -> np.ndarray:
    """The targets :func:`store_targets` put in the frame, N x K float64 in the table's row order."""
    return table.frame[[TARGET_PREFIX + c for c in columns]].to_numpy(dtype=np.float64)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
