"""The regression figures against scikit-learn and hand-computed boxes; the paired comparison with
the baseline; the files a regression evaluation writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from lesionlens.evaluation.regression import RegressionEvaluation, box_iou
from lesionlens.evaluation.regression_report import write_regression_report


def _evaluation(n=200, noise=5.0, box=False, seed=0):
    rng = np.random.default_rng(seed)
    if box:
        x0, y0 = rng.uniform(0.1, 0.4, n), rng.uniform(0.1, 0.4, n)
        truth = np.stack([x0, y0, x0 + rng.uniform(0.2, 0.5, n), y0 + rng.uniform(0.2, 0.5, n)], 1)
        predicted = truth + rng.normal(0, 0.02, truth.shape)
        baseline = np.median(truth, axis=0)
        targets = ["x0", "y0", "x1", "y1"]
    else:
        truth = rng.uniform(20, 80, (n, 1))
        predicted = truth + rng.normal(0, noise, (n, 1))
        baseline = np.array([50.0])
        targets = ["age"]
    ids = [f"img{i}" for i in range(n)]
    return RegressionEvaluation(targets, truth, predicted, baseline, ids, "test", box=box, n_resamples=500, seed=1)


def test_figures_match_scikit_learn_and_their_intervals_hold_them():
    ev = _evaluation()
    y, p = ev.truth[:, 0], ev.predicted[:, 0]
    f = ev.summary["age"]
    assert f["mae"]["estimate"] == pytest.approx(mean_absolute_error(y, p))
    assert f["rmse"]["estimate"] == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert f["r2"]["estimate"] == pytest.approx(r2_score(y, p))
    assert f["baseline_mae"]["estimate"] == pytest.approx(mean_absolute_error(y, np.full_like(y, 50.0)))
    for name in ("mae", "rmse", "r2", "baseline_mae", "mae_vs_baseline"):
        assert f[name]["low"] <= f[name]["estimate"] <= f[name]["high"], name
    # noise sd 5 against ages spread over 60 years: far better than the median, and the interval says so
    assert f["mae_vs_baseline"]["high"] < 0 and f["p_value"] < 0.01


def test_a_model_no_better_than_the_median_gets_an_interval_over_zero():
    rng = np.random.default_rng(3)
    truth = rng.uniform(20, 80, (150, 1))
    predicted = np.full_like(truth, 50.0) + rng.normal(0, 0.5, truth.shape)  # the median, give or take
    ev = RegressionEvaluation(["age"], truth, predicted, np.array([50.0]), [str(i) for i in range(150)],
                              n_resamples=500)
    d = ev.summary["age"]["mae_vs_baseline"]
    assert d["low"] < 0 < d["high"] and ev.summary["age"]["p_value"] > 0.05


def test_box_iou_by_hand():
    truth = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.2, 0.2, 0.4, 0.4], [0.0, 0.0, 1.0, 1.0]])
    predicted = np.array([[0.0, 0.0, 0.5, 0.5],  # the same box
                          [0.25, 0.0, 0.75, 0.5],  # half overlapping: 1/8 over 3/8
                          [0.6, 0.6, 0.8, 0.8],  # apart
                          [1.2, 1.1, -0.3, -0.2]])  # corners swapped and outside the image: ordered, clipped
    np.testing.assert_allclose(box_iou(predicted, truth), [1.0, 1 / 3, 0.0, 1.0])


def test_box_summary_and_the_all_targets_row():
    ev = _evaluation(box=True)
    s = ev.summary
    assert set(s) == {"x0", "y0", "x1", "y1", "all", "box"}
    assert s["box"]["mean_iou"]["estimate"] == pytest.approx(ev.ious.mean())
    assert s["box"]["share_iou_0.5"]["estimate"] >= s["box"]["share_iou_0.75"]["estimate"]
    assert s["all"]["mae"]["estimate"] == pytest.approx(np.abs(ev.residuals).mean())
    with pytest.raises(ValueError, match="a box has 4 targets"):
        RegressionEvaluation(["a", "b"], ev.truth[:, :2], ev.predicted[:, :2], ev.baseline[:2], ev.ids, box=True)


def test_written_files_hold_every_image_and_the_worst_first(tmp_path):
    ev = _evaluation(n=60)
    files = write_regression_report(ev, tmp_path)
    rows = pd.read_csv(files["predictions"])
    assert len(rows) == 60 and list(rows.columns) == ["image_id", "true_age", "predicted_age", "residual_age"]
    np.testing.assert_allclose(rows["residual_age"], rows["predicted_age"] - rows["true_age"], atol=1e-3)
    metrics = json.loads(files["metrics"].read_text())
    assert metrics["n_images"] == 60 and metrics["baseline"]["values"] == [50.0]
    worst = json.loads(files["worst"].read_text())
    errors = [w["error"] for w in worst]
    assert errors == sorted(errors, reverse=True) and errors[0] == pytest.approx(np.abs(ev.residuals).max())
    for name in ("scatter", "residuals"):
        assert files[name].stat().st_size > 10_000
    assert any("baseline" in line for line in ev.lines())
