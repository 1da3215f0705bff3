"""Every supported layout, parsed from small fixture files written in tmp_path."""

from __future__ import annotations

import pytest
from helpers import write_image

from lesionlens.data.load import detect_format, read_table


def test_class_folders(class_folder):
    table = read_table(class_folder)
    assert table.format == "folder"
    assert table.classes == ["bcc", "mel", "nv"]
    assert table.class_counts() == {"bcc": 12, "mel": 12, "nv": 12}
    assert not table.issues
    assert not table.has_partitions()
    assert set(table.frame["image_id"]) >= {"mel/mel_0", "nv/nv_11"}


def test_class_folders_with_partition_folders(tmp_path):
    for part in ("train", "val"):
        for c in ("cat", "dog"):
            for i in range(3):
                write_image(tmp_path / part / c / f"{i}.png", seed=i, fmt="PNG")
    table = read_table(tmp_path)
    assert table.classes == ["cat", "dog"]
    assert table.frame.groupby("partition").size().to_dict() == {"train": 6, "val": 6}
    # the same file name in two partitions is two different images, not a duplicate
    assert not table.issues


def test_csv_with_label_column_and_lesion_groups(tmp_path):
    for i in range(4):
        write_image(tmp_path / "imgs" / f"a{i}.jpg", seed=i)
    (tmp_path / "labels.csv").write_text(
        "filename,diagnosis,patient_id\na0.jpg,benign,p1\na1,benign,p1\na2.jpg,malignant,p2\na3,malignant,p3\n")
    table = read_table(tmp_path / "labels.csv", images=tmp_path / "imgs")
    assert table.format == "csv"
    assert table.classes == ["benign", "malignant"]
    assert list(table.frame["group"]) == ["p1", "p1", "p2", "p3"]
    assert table.frame["path"].str.endswith(".jpg").all()  # found with and without the extension
    assert list(table.frame["row"]) == [2, 3, 4, 5]


def test_course_csv_one_hot_with_partition_column(tmp_path):
    """The course material's table: image_name, Partition, COV, C, N (one-hot), tr/dev/te."""
    rows = ["image_name,Partition,COV,C,N"]
    for i, (part, onehot) in enumerate([("tr", "1,0,0"), ("tr", "0,1,0"), ("tr", "0,0,1"),
                                         ("dev", "1,0,0"), ("dev", "0,1,0"), ("te", "0,0,1")]):
        write_image(tmp_path / f"x{i}.png", seed=i, fmt="PNG")
        rows.append(f"x{i}.png,{part},{onehot}")
    (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
    table = read_table(tmp_path / "table.csv")
    assert table.classes == ["COV", "C", "N"]
    assert list(table.frame["label"]) == ["COV", "C", "N", "COV", "C", "N"]
    assert list(table.frame["partition"]) == ["train", "train", "train", "val", "val", "test"]
    assert not table.issues


def test_ham10000_layout(ham_layout):
    assert detect_format(ham_layout) == "ham10000"
    assert detect_format(ham_layout / "HAM10000_metadata.csv") == "ham10000"
    table = read_table(ham_layout)
    assert table.classes == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    assert table.frame["group"].str.startswith("HAM_").all()
    assert len(table) == 63 and not table.issues


def _isic2018(root, split="Training", n=7):
    gt = root / f"ISIC2018_Task3_{split}_GroundTruth"
    gt.mkdir(parents=True)
    lines = ["image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"]
    for i in range(n):
        flags = ["0.0"] * 7
        flags[i % 7] = "1.0"
        write_image(root / f"ISIC2018_Task3_{split}_Input" / f"ISIC_{split[0]}{i:06d}.jpg", seed=i)
        lines.append(f"ISIC_{split[0]}{i:06d}," + ",".join(flags))
    csv = gt / f"ISIC2018_Task3_{split}_GroundTruth.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_isic2018_ground_truth_csv_finds_its_sibling_input_folder(tmp_path):
    csv = _isic2018(tmp_path, "Test", n=14)
    assert detect_format(csv) == "isic2018"
    table = read_table(csv)
    assert table.classes == ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]
    assert table.class_counts() == {c: 2 for c in table.classes}
    assert not table.issues


def test_isic2018_folder_reads_every_set_with_its_partition(tmp_path):
    _isic2018(tmp_path, "Training", n=14)
    _isic2018(tmp_path, "Validation", n=7)
    (tmp_path / "ISIC2018_Task3_Training_LesionGroupings.csv").write_text(
        "image,lesion_id,diagnosis_confirm_type\n" + "\n".join(
            f"ISIC_T{i:06d},HAM_{i // 2},histo" for i in range(14)) + "\n")
    assert detect_format(tmp_path) == "isic2018"
    table = read_table(tmp_path)
    assert table.frame.groupby("partition").size().to_dict() == {"train": 14, "val": 7}
    train = table.frame[table.frame["partition"] == "train"]
    assert train["group"].tolist()[:4] == ["HAM_0", "HAM_0", "HAM_1", "HAM_1"]


def _isic2017(root):
    sets = {"Training": ["1.0,0.0", "0.0,1.0", "0.0,0.0"] * 2, "Validation": ["1.0,0.0", "0.0,1.0", "0.0,0.0"],
            "Test_v2": ["0.0,0.0", "1.0,0.0", "0.0,1.0"]}
    n = 0
    for name, flags in sets.items():
        lines = ["image_id,melanoma,seborrheic_keratosis"]
        for f in flags:
            write_image(root / f"ISIC-2017_{name}_Data" / f"ISIC_{n:07d}.jpg", seed=n)
            lines.append(f"ISIC_{n:07d},{f}")
            n += 1
        (root / f"ISIC-2017_{name}_Part3_GroundTruth.csv").write_text("\n".join(lines) + "\n")
    return root


def test_isic2017_layout(tmp_path):
    root = _isic2017(tmp_path)
    assert detect_format(root) == "isic2017"
    table = read_table(root)
    assert table.classes == ["melanoma", "seborrheic_keratosis", "nevus"]
    assert table.frame.groupby("partition").size().to_dict() == {"test": 3, "train": 6, "val": 3}
    assert table.frame["label"].tolist()[:3] == ["melanoma", "seborrheic_keratosis", "nevus"]
    test_only = read_table(root / "ISIC-2017_Test_v2_Part3_GroundTruth.csv")
    assert len(test_only) == 3 and not test_only.issues
    assert test_only.frame["partition"].isna().all()


def test_format_can_be_forced_and_unknown_paths_are_named(tmp_path, class_folder):
    assert read_table(class_folder, fmt="folder").format == "folder"
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        read_table(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="needs a CSV file"):
        read_table(class_folder, fmt="csv")
