"""Splits are stratified, grouped by lesion, seeded, and respect partitions the data already has."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.data.splits import assign_partitions
from lesionlens.data.table import make_table


def _table(n_per_class: dict[str, int], groups_of: int = 1, partitions=None):
    records, i = [], 0
    for label, n in n_per_class.items():
        for k in range(n):
            records.append(dict(image_id=f"im{i}", path=f"/x/im{i}.jpg", label=label,
                                group=f"{label}-lesion{k // groups_of}" if groups_of > 1 else None,
                                partition=None if partitions is None else partitions[i], source="t.csv", row=i + 2))
            i += 1
    return make_table(records, list(n_per_class), "csv", "t.csv")


def test_stratified_fractions_per_class():
    table = assign_partitions(_table({"nv": 400, "mel": 50, "df": 10}), val_fraction=0.2, seed=1)
    counts = table.frame.groupby(["label", "partition"]).size().unstack()
    assert counts.loc["nv", "val"] == 80 and counts.loc["mel", "val"] == 10 and counts.loc["df", "val"] == 2


def test_groups_never_straddle_the_split():
    table = assign_partitions(_table({"nv": 300, "mel": 60}, groups_of=3), val_fraction=0.2, seed=3)
    per_group = table.frame.groupby("group")["partition"].nunique()
    assert (per_group == 1).all()
    share = (table.frame["partition"] == "val").mean()
    assert 0.15 < share < 0.25


def test_seeded_and_reproducible():
    a = assign_partitions(_table({"nv": 100, "mel": 30}), seed=7).frame["partition"]
    b = assign_partitions(_table({"nv": 100, "mel": 30}), seed=7).frame["partition"]
    c = assign_partitions(_table({"nv": 100, "mel": 30}), seed=8).frame["partition"]
    assert a.equals(b) and not a.equals(c)


def test_test_fraction_is_held_out_first():
    table = assign_partitions(_table({"nv": 200, "mel": 100}), val_fraction=0.2, test_fraction=0.1)
    sizes = table.frame["partition"].value_counts()
    assert sizes["test"] == 30 and abs(sizes["val"] - 60) <= 1 and sizes.sum() == 300


def test_existing_partitions_are_kept():
    parts = ["train"] * 8 + ["val"] * 2 + ["train"] * 8 + ["val"] * 2
    table = _table({"a": 10, "b": 10}, partitions=parts)
    assert assign_partitions(table).frame["partition"].tolist() == parts


def test_missing_validation_partition_is_carved_from_training_rows():
    parts = ["train"] * 18 + ["test"] * 2 + ["train"] * 18 + ["test"] * 2
    out = assign_partitions(_table({"a": 20, "b": 20}, partitions=parts), val_fraction=0.25)
    frame = out.frame
    assert (frame["partition"][np.array(parts) == "test"] == "test").all()
    assert (frame["partition"] == "val").sum() == 9


def test_a_class_with_one_image_does_not_break_stratification():
    table = assign_partitions(_table({"nv": 50, "mel": 20, "rare": 1}), seed=0)
    assert set(table.frame["partition"]) == {"train", "val"}


def test_bad_fractions_are_refused():
    with pytest.raises(ValueError, match="bad split fractions"):
        assign_partitions(_table({"a": 5, "b": 5}), val_fraction=0.7, test_fraction=0.4)
