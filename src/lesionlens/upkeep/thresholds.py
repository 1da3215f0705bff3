"""Each drift test's threshold, set from the false-alarm rate measured on in-distribution windows.

A p-value below 0.05 does not mean a 5% false-alarm rate here: four tests run on every window, the
class-mix test's chi-square approximation is rough for rare classes, and the quality test's counts
are tiny. So the thresholds are measured instead of guessed. Windows of N cases are drawn from the
reference (without replacement) and each is tested against the rest of the reference: data the
model did not train on, never compared with itself. Then:

- the rule: a window has drifted when ANY test's p-value is below its threshold;
- each test's threshold is the same quantile q of that test's in-distribution p-values (each test
  gets an equal share of the alarms), and q is the largest level at which the share of
  in-distribution windows with any alarm is at most the target false-alarm rate;
- no threshold exceeds the test's Bonferroni share of the target (target / number of tests). The
  calibration windows are splits of one sample; windows of new cases also carry the difference
  between the reference and the population, which the splits cannot show. A test that looks
  conservative on the splits (its thresholds would rise past its share) is not trusted to stay so:
  with each capped at its share, tests that are each valid at their own level cannot add up to more
  than the target (measured on held-out windows, benchmarks/drift.py, before the cap: 4 tests at
  0.05 each gave 12-15% false alarms on some splits).
The thresholds belong to one window size (the tests' power and null distribution change with N)
and are stored in the reference profile for each size calibrated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lesionlens.upkeep.drift import DriftTests
from lesionlens.upkeep.settings import ReferenceSettings

DEFAULTS = ReferenceSettings()


@dataclass(frozen=True)
class Calibration:
    window: int
    draws: int
    target: float  # the false-alarm rate aimed at
    quantile: float  # q: each test's threshold is this quantile of its in-distribution p-values
    thresholds: dict[str, float]  # test -> drift when p < threshold
    false_alarms: dict[str, float]  # measured on the calibration windows: per test, and "any"
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        return cls(**d)


def calibrate(tests: DriftTests, window: int, draws: int = DEFAULTS.draws, target: float = DEFAULTS.target,
              seed: int = 0) -> Calibration:
    """Thresholds for windows of ``window`` cases from ``draws`` in-distribution windows."""
    n = len(tests.reference)
    if window < 1:
        raise ValueError(f"a window needs at least 1 case, not {window}")
    if n < 2 * window:
        raise ValueError(f"a reference of {n} images cannot calibrate windows of {window} cases: each "
                         f"in-distribution window is compared with the rest of the reference, which needs "
                         f"at least {2 * window} images (a smaller --window, or more reference images)")
    if not 0 < target < 1:
        raise ValueError(f"the target false-alarm rate must be between 0 and 1, not {target}")
    rng = np.random.default_rng(seed)
    names = tests.names
    p = np.empty((draws, len(names)))
    null = tests.held_out_null(window, rng)
    for i in range(draws):
        rows = np.sort(rng.choice(n, window, replace=False))
        results = tests.run_held_out(rows, null, rng)
        p[i] = [results[name].p_value for name in names]
    quantile, thresholds = fit_thresholds(p, target)
    fired = p < thresholds
    rates = {name: float(fired[:, k].mean()) for k, name in enumerate(names)} | {"any": float(fired.any(1).mean())}
    return Calibration(window, draws, target, quantile, dict(zip(names, thresholds.tolist())), rates, seed)


def fit_thresholds(p: np.ndarray, target: float) -> tuple[float, np.ndarray]:
    """(q, thresholds) for in-distribution p-values ``p`` (draws x tests): the largest q whose
    thresholds (each column's q-quantile, capped at ``target / columns``) make at most ``target`` of
    the rows fire (p < threshold in any column)."""
    draws = len(p)
    cap = target / p.shape[1]
    best_q, best = 0.0, np.zeros(p.shape[1])
    # candidate levels: every achievable fraction of the draws up to the target
    for k in range(1, int(np.floor(target * draws)) + 1):
        q = k / draws
        thresholds = np.minimum(_lower_quantile(p, q), cap)
        if (p < thresholds).any(axis=1).mean() <= target:
            best_q, best = q, thresholds
    return best_q, best


def _lower_quantile(p: np.ndarray, q: float) -> np.ndarray:
    """Per column, the largest threshold t with at most a share q of the column strictly below t:
    the (k+1)-th smallest value for k = floor(q * draws)."""
    k = int(np.floor(q * len(p)))
    return np.sort(p, axis=0)[min(k, len(p) - 1)]
