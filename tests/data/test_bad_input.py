"""Each kind of bad input gives a clear error naming the file and row; skip drops and reports it."""

from __future__ import annotations

import csv

import pytest
from helpers import write_image

from lesionlens.data.images import Preprocessing
from lesionlens.data.load import prepare, read_table
from lesionlens.data.table import DataError

PRE = Preprocessing(image_size=16)


def _csv(tmp_path, rows: list[str], header: str = "image,label") -> str:
    path = tmp_path / "t.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _good(tmp_path, n=4):
    for i in range(n):
        write_image(tmp_path / f"g{i}.jpg", seed=i)
    return [f"g{i}.jpg,{'a' if i % 2 else 'b'}" for i in range(n)]


def _stop_message(table) -> str:
    with pytest.raises(DataError) as e:
        prepare(table, PRE, "stop")
    return str(e.value)


def test_missing_file(tmp_path):
    table = read_table(_csv(tmp_path, [*_good(tmp_path), "gone.jpg,a"]))
    msg = _stop_message(table)
    assert "t.csv:6: gone.jpg: image file not found" in msg
    assert "--on-bad-input skip" in msg


def test_truncated_and_unreadable_images(tmp_path):
    good = _good(tmp_path)
    data = (tmp_path / "g0.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("this is not an image")
    table = read_table(_csv(tmp_path, [*good, "cut.jpg,a", "text.jpg,b"]))
    msg = _stop_message(table)
    assert "t.csv:6: cut.jpg: " in msg and "cannot decode" in msg
    assert "t.csv:7: text.jpg: " in msg


def test_unknown_label_in_a_fixed_vocabulary(ham_layout):
    csv_path = ham_layout / "HAM10000_metadata.csv"
    lines = csv_path.read_text().splitlines()
    lines[3] = lines[3].replace(",mel,", ",melanomaa,")
    csv_path.write_text("\n".join(lines) + "\n")
    msg = _stop_message(read_table(ham_layout))
    assert "HAM10000_metadata.csv:4: ISIC_0000002: unknown label 'melanomaa'" in msg


def test_class_with_no_images(tmp_path, class_folder):
    (class_folder / "empty_class").mkdir()
    msg = _stop_message(read_table(class_folder))
    assert "class 'empty_class' has no images" in msg


def test_duplicate_ids(tmp_path):
    good = _good(tmp_path)
    table = read_table(_csv(tmp_path, [*good, "g1.jpg,a"]))
    msg = _stop_message(table)
    assert "t.csv:6: g1.jpg: duplicate image id (first seen at line 3)" in msg


def test_one_hot_rows_with_zero_or_two_classes(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"g{i}.jpg", seed=i)
    path = _csv(tmp_path, ["g0.jpg,1,0", "g1.jpg,1,1", "g2.jpg,0,0"], header="image,A,B")
    msg = _stop_message(read_table(path))
    assert "t.csv:3: g1.jpg: expected exactly one class flag set to 1, found 2" in msg
    assert "t.csv:4: g2.jpg: expected exactly one class flag set to 1, found 0" in msg


def test_non_image_file_in_class_folder(class_folder):
    (class_folder / "mel" / "notes.txt").write_text("hello")
    msg = _stop_message(read_table(class_folder))
    assert "notes.txt" in msg and "not an image file" in msg


def test_skip_drops_exactly_the_bad_rows_and_writes_a_report(tmp_path):
    good = _good(tmp_path)
    (tmp_path / "text.jpg").write_text("nope")
    table = read_table(_csv(tmp_path, [*good, "gone.jpg,a", "text.jpg,b", "g2.jpg,a"]))
    report = tmp_path / "issues.csv"
    data = prepare(table, PRE, "skip", report=report)
    assert sorted(data.table.frame["image_id"]) == ["g0.jpg", "g1.jpg", "g2.jpg", "g3.jpg"]
    with report.open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["row"], r["image_id"]) for r in rows] == [("6", "gone.jpg"), ("8", "g2.jpg"), ("7", "text.jpg")]
    # the kept rows still point at the right decoded images
    assert data.images.array[data.table.frame["cache_row"]].shape == (4, 16, 16, 3)


def test_skip_removes_a_class_left_without_images(tmp_path):
    good = _good(tmp_path)
    table = read_table(_csv(tmp_path, [*good, "gone.jpg,c"]))
    data = prepare(table, PRE, "skip")
    assert data.table.classes == ["a", "b"]


def test_csv_without_labels_is_refused_with_its_columns(tmp_path):
    path = _csv(tmp_path, ["a.jpg,3", "b.jpg,7"], header="image,age")
    with pytest.raises(ValueError, match=r"t.csv: cannot find the labels.*\['image', 'age'\]"):
        read_table(path)
