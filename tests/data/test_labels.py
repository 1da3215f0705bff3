"""Label views and class alignment across collections."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.data.labels import align_classes, apply_view, binary_membership, canonical
from lesionlens.data.load import read_table

HAM = ["mel", "nv", "bcc", "akiec", "bkl", "df", "vasc"]


def test_canonical_names():
    assert canonical("MEL") == "mel"
    assert canonical("melanoma") == "mel"
    assert canonical("seborrheic_keratosis") == "bkl"
    assert canonical("Nevus") == "nv"
    assert canonical("COVID") is None


def test_binary_membership():
    assert binary_membership(HAM, "malignant").tolist() == [True, False, True, True, False, False, False]
    assert binary_membership(HAM, "melanoma").tolist() == [True] + [False] * 6
    assert binary_membership(["cat", "dog"], "malignant") is None
    assert binary_membership(["nv", "bkl"], "melanoma") is None  # no positive class


def test_views_relabel_a_table(ham_layout):
    table = read_table(ham_layout)
    mal = apply_view(table, "malignant")
    assert mal.classes == ["benign", "malignant"]
    expected = table.frame["label"].isin(["mel", "bcc", "akiec"])
    assert (mal.frame["label"] == "malignant").equals(expected)
    mel = apply_view(table, "melanoma")
    assert mel.classes == ["other", "melanoma"]
    assert (mel.frame["label"] == "melanoma").sum() == (table.frame["label"] == "mel").sum()
    assert apply_view(table, "all") is table


def test_view_of_non_diagnoses_is_refused(class_folder, tmp_path):
    (tmp_path / "f" / "cat").mkdir(parents=True)
    table = read_table(class_folder)
    table.classes[0] = "cat"
    with pytest.raises(ValueError, match="not known diagnoses"):
        apply_view(table, "malignant")


def test_align_isic2017_names_to_a_ham_model():
    mapping = align_classes(["melanoma", "seborrheic_keratosis", "nevus"], HAM)
    assert mapping == {"melanoma": 0, "seborrheic_keratosis": 4, "nevus": 1}
    with pytest.raises(ValueError, match=r"\['unicorn'\]"):
        align_classes(["mel", "unicorn"], HAM)
    assert np.array_equal(list(align_classes(["b", "a"], ["a", "b"]).values()), [1, 0])
