"""The split file: written once by training, read back by every command (and as --data)."""

from __future__ import annotations

import pytest

from lesionlens.bundle.schema import BundleError
from lesionlens.bundle.split import COLUMNS, hashes_by_partition, read_split
from lesionlens.data.load import read_table


def test_the_split_reads_back_as_rows_and_as_training_data(exported_bundle):
    rows = read_split(exported_bundle)
    assert len(rows) == 36 and {r.partition for r in rows} == {"train", "val"}
    assert all(len(r.sha256) == 64 and r.path.startswith("/") for r in rows)
    hashes = hashes_by_partition(rows)
    assert not hashes["train"] & hashes["val"]
    table = read_table(exported_bundle / "split.csv")  # --data split.csv trains on the same split
    read_back = dict(zip(map(str, table.frame["path"]), table.frame["partition"]))
    assert read_back == {r.path: r.partition for r in rows}


def test_a_file_that_is_not_a_split_is_refused_by_name(tmp_path):
    bad = tmp_path / "split.csv"
    bad.write_text("image,label\na.jpg,mel\n")
    with pytest.raises(BundleError, match=rf"{bad}: not a split file: no column image_id, partition"):
        read_split(bad)
    assert COLUMNS[0] == "image_id"
    with pytest.raises(BundleError, match="cannot read the split file"):
        read_split(tmp_path / "missing.csv")
