"""The drift tests and their calibration on synthetic arrays with known answers: the same
distribution gives false alarms near the level over many draws; a shifted one is detected."""

from __future__ import annotations

import numpy as np
import pytest

from lesionlens.upkeep.drift import (
    DriftTests,
    Sample,
    class_mix_test,
    gaussian_kernel,
    holm,
    median_bandwidth,
    mmd_permutation,
    output_test,
    quality_test,
)
from lesionlens.upkeep.thresholds import calibrate, fit_thresholds

CLASSES = ["mel", "nv", "bcc"]


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def population(n: int, rng: np.random.Generator, shift: float = 0.0, flag_rate: float = 0.02) -> Sample:
    """Cases whose logits and embeddings are Gaussian; ``shift`` moves both."""
    logits = rng.normal(0, 1, (n, 3)) + np.array([shift, 0.0, -shift])
    embeddings = rng.normal(0, 1, (n, 8)) + shift
    return Sample(softmax(logits), embeddings, rng.random(n) < flag_rate)


def test_holm_matches_the_step_down_by_hand():
    # sorted p: 0.01, 0.02, 0.04 -> 3 * 0.01 = 0.03, max(0.03, 2 * 0.02) = 0.04, max(0.04, 1 * 0.04) = 0.04
    assert np.allclose(holm(np.array([0.04, 0.01, 0.02])), [0.04, 0.03, 0.04])
    # sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.03, 0.06, max(0.06, 0.04); capped at 1
    assert np.allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])


def test_each_test_gives_uniform_p_values_on_the_same_distribution_and_small_ones_on_a_shift():
    rng = np.random.default_rng(0)
    ref = population(400, rng)
    same_p, shifted_p = [], []
    for _ in range(200):
        same_p.append(output_test(ref.probabilities, population(100, rng).probabilities, CLASSES).p_value)
    for _ in range(20):
        shifted_p.append(output_test(ref.probabilities, population(100, rng, shift=0.6).probabilities, CLASSES).p_value)
    # Holm over 3 classes keeps the family's false alarms at or below the level
    assert np.mean(np.array(same_p) < 0.05) <= 0.08
    assert np.mean(np.array(shifted_p) < 0.05) == 1.0


def test_mmd_permutation_test_holds_its_level_and_detects_a_mean_shift():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (150, 4))
    width = median_bandwidth(ref)
    k_rr = gaussian_kernel(ref, ref, width)

    def p_of(window):
        pooled = np.vstack([window, ref])
        return mmd_permutation(gaussian_kernel(pooled, pooled, width), len(window), 200, rng)[1]

    same = [p_of(rng.normal(0, 1, (50, 4))) for _ in range(100)]
    shifted = [p_of(rng.normal(0.5, 1, (50, 4))) for _ in range(10)]
    assert 0.0 <= np.mean(np.array(same) < 0.05) <= 0.12
    assert np.mean(np.array(shifted) < 0.05) == 1.0
    assert k_rr.shape == (150, 150)


def test_class_mix_and_quality_tests_known_answers():
    same = class_mix_test(np.array([100, 200, 100]), np.array([25, 50, 25]), CLASSES)
    assert same.statistic == pytest.approx(0.0) and same.p_value == pytest.approx(1.0)
    moved = class_mix_test(np.array([100, 200, 100]), np.array([70, 20, 10]), CLASSES)
    assert moved.p_value < 1e-6
    # Fisher's exact test, one-sided: 0 of 600 flagged in the reference, 1 of 200 in the window:
    # P(the window holds the one flagged case of 800) = 200/800
    assert quality_test(0, 600, 1, 200).p_value == pytest.approx(0.25)
    assert quality_test(6, 600, 0, 200).p_value == pytest.approx(1.0)  # fewer flags never alarms
    assert quality_test(6, 600, 20, 200).p_value < 1e-4


def test_fit_thresholds_keeps_the_share_of_rows_with_any_alarm_at_the_target():
    rng = np.random.default_rng(2)
    p = rng.random((1000, 3))
    p[:, 0] = p[:, 0] ** 2  # an anti-conservative test: too many small p-values
    q, thresholds = fit_thresholds(p, 0.05)
    fired = (p < thresholds).any(axis=1).mean()
    assert 0.04 < fired <= 0.05  # as many alarms as the target allows, no more
    assert thresholds[0] < 0.05 / 3  # the anti-conservative test gets a threshold below its share
    assert np.all(thresholds <= 0.05 / 3) and 0 < q < 0.05
    # a test that never falls low (a quality test with no flagged reference image), or looks
    # conservative, gets its Bonferroni share of the target and no more
    p[:, 2] = 1.0
    _, thresholds = fit_thresholds(p, 0.05)
    assert thresholds[2] == pytest.approx(0.05 / 3)


def test_calibrated_thresholds_hold_the_false_alarm_rate_on_new_in_distribution_windows():
    rng = np.random.default_rng(3)
    ref = population(300, rng)
    tests = DriftTests(ref, CLASSES, median_bandwidth(ref.embeddings), permutations=200)
    c = calibrate(tests, 50, draws=200, target=0.1, seed=0)
    assert set(c.thresholds) == {"outputs", "embeddings", "class_mix", "quality"}
    assert c.false_alarms["any"] <= 0.1
    alarms = detected = 0
    for _ in range(100):
        results = tests.run(population(50, rng), rng)
        alarms += any(results[t].p_value < c.thresholds[t] for t in c.thresholds)
    for _ in range(10):
        results = tests.run(population(50, rng, shift=0.8), rng)
        detected += any(results[t].p_value < c.thresholds[t] for t in c.thresholds)
    assert alarms / 100 <= 0.18  # target 0.1; binomial noise of 100 windows is about +-0.03
    assert detected == 10


def test_calibration_refuses_a_reference_too_small_for_the_window():
    rng = np.random.default_rng(4)
    tests = DriftTests(population(30, rng), CLASSES, 1.0)
    with pytest.raises(ValueError, match="at least 40 images"):
        calibrate(tests, 20)


def test_without_embeddings_the_embeddings_test_is_left_out():
    rng = np.random.default_rng(5)
    ref = population(100, rng)
    tests = DriftTests(Sample(ref.probabilities, None, ref.flagged), CLASSES, None)
    results = tests.run(Sample(ref.probabilities[:20], None, ref.flagged[:20]), rng)
    assert list(results) == ["outputs", "class_mix", "quality"]
    assert list(calibrate(tests, 20, draws=50).thresholds) == ["outputs", "class_mix", "quality"]
