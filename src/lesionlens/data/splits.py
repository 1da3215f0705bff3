"""Train / validation / test splits: stratified by class, grouped by lesion or patient, seeded.

Grouping keeps every image of one lesion (or patient) on one side, so the validation score is not
inflated by near-copies of training images. A table that already has partitions keeps them; only a
missing validation set is carved out of its training rows.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from lesionlens.data.table import ImageTable

log = logging.getLogger(__name__)


def assign_partitions(table: ImageTable, val_fraction: float = 0.2, test_fraction: float = 0.0,
                      seed: int = 0) -> ImageTable:
    """Fill the ``partition`` column with train / val / test."""
    if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val {val_fraction}, test {test_fraction}")
    frame = table.frame.copy()
    if table.has_partitions():
        if frame["partition"].isna().any():
            raise ValueError(f"{table.source}: some rows have a partition and some do not")
        if (frame["partition"] == "val").any():
            return table
        pool = np.flatnonzero(frame["partition"] == "train")
        log.info("no validation partition in %s: holding out %.0f%% of its training rows",
                 table.source, 100 * val_fraction)
        frame.loc[pool[_holdout(table, pool, val_fraction, seed)], "partition"] = "val"
        return replace(table, frame=frame)
    frame["partition"] = "train"
    pool = np.arange(len(frame))
    if test_fraction > 0:
        test = pool[_holdout(table, pool, test_fraction, seed)]
        frame.loc[test, "partition"] = "test"
        pool = np.setdiff1d(pool, test)
    val = pool[_holdout(table, pool, val_fraction / (1 - test_fraction), seed)]
    frame.loc[val, "partition"] = "val"
    return replace(table, frame=frame)


def _holdout(table: ImageTable, pool: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Positions within ``pool`` to hold out: about ``fraction`` of each class, whole groups."""
    labels = table.frame["label"].to_numpy()[pool]
    strata = _mergeable_strata(labels)
    groups = table.frame["group"].to_numpy()[pool]
    if any(g is not None and g == g for g in groups):  # g == g is False for NaN
        groups = np.array([g if g is not None and g == g else f"__image_{i}" for i, g in enumerate(groups)])
        n_splits = max(2, round(1 / fraction))
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        _, held = next(splitter.split(np.zeros(len(pool)), strata, groups))
        return np.sort(held)
    _, held = train_test_split(np.arange(len(pool)), test_size=fraction, random_state=seed, stratify=strata)
    return np.sort(held)


def _mergeable_strata(labels: np.ndarray) -> np.ndarray:
    """Classes with fewer than two images cannot be stratified: they share one stratum, or join
    the largest class when even together they are a single image."""
    values, counts = np.unique(labels.astype(str), return_counts=True)
    rare = set(values[counts < 2])
    bucket = "__rare__" if counts[counts < 2].sum() >= 2 else str(values[counts.argmax()])
    return np.array([bucket if str(v) in rare else str(v) for v in labels])
