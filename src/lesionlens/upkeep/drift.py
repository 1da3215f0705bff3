"""Two-sample drift tests of one window of cases against a bundle's reference profile.

Four tests, each answering "do these cases look like the reference?" with a p-value:

- ``outputs``: the calibrated probability of each class, window against reference, by the two-sample
  Kolmogorov-Smirnov test (scipy); the classes' p-values are corrected by Holm's step-down method.
  The family's p-value is the smallest Holm-adjusted one (for the smallest p-value Holm and Bonferroni
  agree: ``min(1, C * min p)``), so the test fires when any class has moved. Tests on a classifier's
  outputs were the most reliable shift detectors in Rabanser et al. 2019 ("Failing Loudly").
- ``embeddings``: the maximum mean discrepancy (MMD, Gaussian kernel) between the penultimate
  embeddings, with a permutation test. The embeddings are first projected on the reference's leading
  principal components (fitted on the reference only), which makes the kernel cheap and keeps the
  directions the reference actually varies in; the kernel's width is the reference's median distance.
- ``class_mix``: the predicted classes' counts, window against reference, by Pearson's chi-square test
  of the 2 x C table (classes neither sample predicts are left out).
- ``quality``: the share of cases the image-quality check flagged, window above reference, by
  Fisher's exact test (one-sided: fewer unusable photos is no reason to alarm).

None of these p-values decides on its own at 0.05: :mod:`lesionlens.upkeep.thresholds` sets each
test's threshold from the false-alarm rate measured on in-distribution windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

TESTS = ("outputs", "embeddings", "class_mix", "quality")
DESCRIPTIONS = {
    "outputs": "calibrated probability per class: two-sample Kolmogorov-Smirnov, Holm-corrected over classes",
    "embeddings": "penultimate embeddings (PCA of the reference): MMD with a permutation test",
    "class_mix": "predicted-class mix: chi-square test of the 2 x C table",
    "quality": "quality-flag rate above the reference's: Fisher's exact test, one-sided",
}


@dataclass(frozen=True)
class DriftResult:
    name: str  # one of TESTS
    statistic: float
    p_value: float
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """What the tests compare: a set of cases' calibrated probabilities, projected embeddings (None
    where the model has no feature maps), predicted classes and quality flags."""

    probabilities: np.ndarray  # N x C
    embeddings: np.ndarray | None  # N x k, already projected
    flagged: np.ndarray  # N bool

    def __len__(self) -> int:
        return len(self.probabilities)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def take(self, rows: np.ndarray) -> "Sample":
        return Sample(self.probabilities[rows], None if self.embeddings is None else self.embeddings[rows],
                      self.flagged[rows])


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (strong control of the family-wise error rate)."""
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def output_test(reference: np.ndarray, window: np.ndarray, classes: list[str]) -> DriftResult:
    result = stats.ks_2samp(reference, window, axis=0)
    d, p = np.atleast_1d(result.statistic), np.atleast_1d(result.pvalue)
    adjusted = holm(p)
    return DriftResult("outputs", float(d.max()), float(adjusted.min()), {
        "per_class": {c: {"ks": round(float(d[k]), 4), "p": float(p[k]), "p_holm": float(adjusted[k])}
                      for k, c in enumerate(classes)}})


def class_mix_test(reference: np.ndarray, window: np.ndarray, classes: list[str]) -> DriftResult:
    """``reference`` and ``window`` are predicted-class counts per class."""
    table = np.stack([window, reference]).astype(np.float64)
    used = table.sum(axis=0) > 0
    detail = {"window": {c: int(n) for c, n in zip(classes, window)}}
    if used.sum() < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return DriftResult("class_mix", 0.0, 1.0, detail)
    chi2, p, _, _ = stats.chi2_contingency(table[:, used], correction=False)
    return DriftResult("class_mix", float(chi2), float(p), detail)


def quality_test(reference_flagged: int, reference_n: int, window_flagged: int, window_n: int) -> DriftResult:
    _, p = stats.fisher_exact([[window_flagged, window_n - window_flagged],
                               [reference_flagged, reference_n - reference_flagged]], alternative="greater")
    rate = window_flagged / window_n if window_n else 0.0
    return DriftResult("quality", rate - reference_flagged / max(reference_n, 1), float(p),
                      {"window_rate": rate, "reference_rate": reference_flagged / max(reference_n, 1)})


def gaussian_kernel(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.exp(-np.maximum(sq, 0.0) / (2.0 * bandwidth * bandwidth))


def median_bandwidth(x: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """The median distance between points of ``x`` (the usual choice of a Gaussian kernel's width)."""
    rng = np.random.default_rng(seed)
    if len(x) > max_points:
        x = x[rng.choice(len(x), max_points, replace=False)]
    sq = (x * x).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2.0 * x @ x.T
    d = np.sqrt(np.maximum(sq[np.triu_indices(len(x), 1)], 0.0))
    return float(np.median(d)) if d.size else 1.0


def split_mmd2(kernel: np.ndarray, z: np.ndarray) -> np.ndarray:
    """MMD² (biased) of each split of a pooled sample, given its kernel matrix and indicator columns
    ``z`` (n x P, 1 for the window's points): zᵀKz, zᵀK(1-z) and (1-z)ᵀK(1-z) are matrix products."""
    n_window = z[:, 0].sum()
    m = len(kernel) - n_window
    row = kernel.sum(axis=1)
    kz = kernel @ z
    ww = (z * kz).sum(axis=0)
    zr = z.T @ row
    wr = zr - ww
    rr = row.sum() - 2.0 * zr + ww
    return ww / n_window ** 2 + rr / m ** 2 - 2.0 * wr / (n_window * m)


def random_splits(n: int, n_window: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random windows of ``n_window`` of ``n`` pooled points, as indicator columns."""
    return (rng.random((n, count)).argsort(axis=0) < n_window).astype(np.float32)


def permutation_null(kernel: np.ndarray, n_window: int, permutations: int, rng: np.random.Generator,
                     chunk: int = 250) -> np.ndarray:
    """MMD² of ``permutations`` random splits of the pooled sample (the permutation distribution)."""
    kernel = kernel.astype(np.float32)
    return np.concatenate([split_mmd2(kernel, random_splits(len(kernel), n_window, min(chunk, permutations - s), rng))
                           for s in range(0, permutations, chunk)])


def permutation_p(statistic: float, null: np.ndarray) -> float:
    return float((1 + (null >= statistic - 1e-9).sum()) / (1 + len(null)))


def mmd_permutation(kernel: np.ndarray, n_window: int, permutations: int,
                    rng: np.random.Generator) -> tuple[float, float]:
    """(MMD², permutation p-value) of the first ``n_window`` points of the pooled sample against the rest."""
    observed = np.zeros((len(kernel), 1), np.float32)
    observed[:n_window] = 1.0
    stat = float(split_mmd2(kernel.astype(np.float32), observed)[0])
    return stat, permutation_p(stat, permutation_null(kernel, n_window, permutations, rng))


@dataclass
class DriftTests:
    """The four tests against one reference sample, with what can be computed once kept (the
    reference's kernel matrix, its class counts and flag count)."""

    reference: Sample
    classes: list[str]
    bandwidth: float | None
    permutations: int = 500

    def __post_init__(self) -> None:
        ref = self.reference
        self.reference_counts = np.bincount(ref.predicted, minlength=len(self.classes))
        self.reference_flagged = int(ref.flagged.sum())
        self._kernel_rr = (gaussian_kernel(ref.embeddings, ref.embeddings, self.bandwidth).astype(np.float32)
                           if self.has_embeddings else None)

    @property
    def has_embeddings(self) -> bool:
        return self.reference.embeddings is not None and self.bandwidth is not None

    @property
    def names(self) -> tuple[str, ...]:
        return TESTS if self.has_embeddings else tuple(t for t in TESTS if t != "embeddings")

    def run(self, window: Sample, rng: np.random.Generator) -> dict[str, DriftResult]:
        """Every test of ``window`` against the whole reference."""
        kernel = None
        if self.has_embeddings:
            kernel = _pooled(self._kernel_rr, window.embeddings, self.reference.embeddings, self.bandwidth)
        return self._run(window, self.reference.probabilities, self.reference_counts, self.reference_flagged,
                         len(self.reference), kernel, rng)

    def held_out_null(self, n_window: int, rng: np.random.Generator) -> np.ndarray | None:
        """The embeddings' permutation distribution for windows of ``n_window`` held out of the
        reference: every held-out window pools the whole reference, so all share it."""
        return permutation_null(self._kernel_rr, n_window, self.permutations, rng) if self.has_embeddings else None

    def run_held_out(self, rows: np.ndarray, null: np.ndarray | None, rng: np.random.Generator) -> dict[str, DriftResult]:
        """The tests of the reference's ``rows`` against the rest of the reference: an
        in-distribution window that is never compared with itself (for calibrating thresholds).
        ``null`` is :meth:`held_out_null` for this window size."""
        ref = self.reference
        rest = np.setdiff1d(np.arange(len(ref)), rows)
        counts = np.bincount(ref.predicted[rest], minlength=len(self.classes))
        out = self._run(ref.take(rows), ref.probabilities[rest], counts, int(ref.flagged[rest].sum()), len(rest),
                        None, rng)
        if null is not None:
            z = np.zeros((len(ref), 1), np.float32)
            z[rows] = 1.0
            stat = float(split_mmd2(self._kernel_rr, z)[0])
            out["embeddings"] = DriftResult("embeddings", stat, permutation_p(stat, null),
                                            {"permutations": self.permutations})
        return _ordered(out)

    def _run(self, window: Sample, ref_probs: np.ndarray, ref_counts: np.ndarray, ref_flagged: int, ref_n: int,
             kernel: np.ndarray | None, rng: np.random.Generator) -> dict[str, DriftResult]:
        out = {"outputs": output_test(ref_probs, window.probabilities, self.classes)}
        if kernel is not None:
            stat, p = mmd_permutation(kernel, len(window), self.permutations, rng)
            out["embeddings"] = DriftResult("embeddings", stat, p, {"permutations": self.permutations})
        out["class_mix"] = class_mix_test(ref_counts, np.bincount(window.predicted, minlength=len(self.classes)),
                                          self.classes)
        out["quality"] = quality_test(ref_flagged, ref_n, int(window.flagged.sum()), len(window))
        return _ordered(out)


def _ordered(results: dict[str, DriftResult]) -> dict[str, DriftResult]:
    return {name: results[name] for name in TESTS if name in results}


def _pooled(k_rr: np.ndarray, w: np.ndarray, r: np.ndarray, bandwidth: float) -> np.ndarray:
    """The kernel matrix of window then reference, reusing the reference's block."""
    k_ww = gaussian_kernel(w, w, bandwidth)
    k_wr = gaussian_kernel(w, r, bandwidth)
    return np.block([[k_ww, k_wr], [k_wr.T, k_rr]])
