"""Metric values against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lesionlens.evaluation import metrics as M
from lesionlens.evaluation.result import Evaluation


def test_course_cat_dog_example():
    """TP 5, FN 3, FP 2, TN 3 (the course material's cat/dog classifier)."""
    s = M.BinaryStats(tp=5, fn=3, fp=2, tn=3)
    assert s.sensitivity == pytest.approx(0.625)
    assert s.specificity == pytest.approx(0.6)
    assert s.ppv == pytest.approx(0.714, abs=5e-4)
    assert s.npv == pytest.approx(0.5)
    assert s.accuracy == pytest.approx(8 / 13)
    assert s.f1 == pytest.approx(10 / 15)


def test_counts_from_decisions():
    truth = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0], bool)
    decision = np.array([1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0], bool)
    assert M.binary_stats(truth, decision) == M.BinaryStats(5, 3, 2, 3)


def test_undefined_ratios_are_nan_not_zero():
    s = M.BinaryStats(tp=0, fn=0, fp=0, tn=4)
    assert math.isnan(s.sensitivity) and math.isnan(s.ppv) and s.specificity == 1.0


def test_multiclass_confusion_matrix_and_balanced_accuracy():
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 2, 2, 2, 0, 2])
    cm = M.confusion_matrix(y_true, y_pred, 3)
    assert cm.tolist() == [[3, 1, 0], [0, 1, 1], [1, 0, 3]]
    # recalls 3/4, 1/2, 3/4 -> mean 2/3; accuracy 7/10
    assert M.balanced_accuracy(cm) == pytest.approx(2 / 3)
    assert np.allclose(M.row_normalised(cm)[1], [0, 0.5, 0.5])
    stats = M.one_vs_rest(cm)
    assert stats[0] == M.BinaryStats(tp=3, fn=1, fp=1, tn=5)
    assert stats[2] == M.BinaryStats(tp=3, fn=1, fp=1, tn=5)


def test_balanced_accuracy_ignores_classes_absent_from_the_data():
    cm = np.array([[2, 0, 0], [0, 0, 0], [1, 0, 1]])
    assert M.balanced_accuracy(cm) == pytest.approx((1.0 + 0.5) / 2)


def test_auc_by_hand():
    # pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) lose, (0.8 vs both) win -> 3/4
    assert M.binary_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(M.binary_auc([1, 1], [0.2, 0.3]))


@pytest.mark.parametrize("auc, grade", [(0.95, "A excellent"), (0.9, "A excellent"), (0.85, "B good"),
                                        (0.75, "C fair"), (0.65, "D poor"), (0.55, "F fail"),
                                        (0.4, "F worse than chance"), (float("nan"), None)])
def test_auc_grades(auc, grade):
    assert M.auc_grade(auc) == grade


def test_evaluation_binary_views_sum_the_positive_classes():
    classes = ["mel", "nv", "bcc"]
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    ev = Evaluation(classes, np.array([0, 1, 2, 1]), probs)
    mal = ev.binary("malignant")
    assert mal.positive_classes == ["mel", "bcc"]
    assert np.allclose(mal.score, [0.7, 0.3, 0.5, 0.7])
    assert mal.y_true.tolist() == [True, False, True, False]
    assert mal.y_pred.tolist() == [True, False, False, True]
    assert mal.stats == M.BinaryStats(tp=1, fn=1, fp=1, tn=1)
    mel = ev.binary("melanoma")
    assert mel.auc == pytest.approx(1.0)
    summary = ev.summary()
    assert summary["per_class"]["nv"]["support"] == 2
    assert summary["accuracy"] == pytest.approx(0.5)
    assert set(summary["binary"]) == {"malignant", "melanoma"}


def test_summary_writes_null_for_undefined_figures(tmp_path):
    ev = Evaluation(["a", "b", "c"], np.array([0, 1, 0]), np.array([[0.9, 0.1, 0], [0.2, 0.8, 0], [0.6, 0.4, 0]]))
    summary = ev.summary()
    assert summary["per_class"]["c"]["sensitivity"] is None and summary["per_class"]["c"]["auc"] is None
    assert summary["classes_present"] == ["a", "b"]
    text = ev.save(tmp_path).read_text()
    assert "NaN" not in text
    assert (tmp_path / "predictions.csv").read_text().splitlines()[0] == "image_id,true,predicted,p_a,p_b,p_c"
