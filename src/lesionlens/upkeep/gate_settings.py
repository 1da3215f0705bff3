"""The gate's margins and resampling, with why each default is what it is. Dependency-free, so the
command line can show the defaults without importing the statistics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GateSettings:
    """The gate's margins and resampling. Defaults, and why:"""

    # Issue 14: "the lower bound ... >= -delta, default 2 points" for sensitivity and specificity at
    # the operating point and (the same margin rule) for AUC.
    delta: float = 0.02
    # ECE of the view's score: 0.02, the same two points as delta, read as "the probability a user is
    # shown may be off by at most two more points on average". The HAM10000 models' melanoma-score ECE
    # is 0.02-0.04 after temperature scaling, so this allows at most about doubling it.
    ece_margin: float = 0.02
    # Brier score of the view's score: 0.01. The HAM10000 champion's melanoma Brier is about 0.06 (a
    # 8% prevalence); 0.01 is a sixth of it, and about what a 2-point loss of AUC costs in Brier there.
    brier_margin: float = 0.01
    # 2,000 resamples: the 2.5% tail of a percentile interval then rests on 50 resamples (1,000, the
    # evaluation report's default, on 25), so the bound moves by well under a point between seeds.
    resamples: int = 2000
    seed: int = 0
    level: float = 0.95  # two-sided: the lower bound is one-sided 97.5% (see the module docstring)
    # Below 20 positives a sensitivity's own 95% interval is wider than +-0.2 (Wilson, 16 of 20:
    # [0.58, 0.92]) and the percentile bootstrap under-covers on so few discrete values.
    min_positives: int = 20
    min_negatives: int = 20
    bins: int = 15  # ECE bins, as evaluation.calibration (Guo et al. 2017)

    def margin(self, metric: str) -> float:
        return {"ece": self.ece_margin, "brier": self.brier_margin}.get(metric, self.delta)

    def to_dict(self) -> dict:
        return {"delta": self.delta, "auc_margin": self.delta, "ece_margin": self.ece_margin,
                "brier_margin": self.brier_margin, "resamples": self.resamples, "seed": self.seed,
                "level": self.level, "interval": "two-sided percentile interval of the paired stratified bootstrap "
                                                 "(DeLong's normal interval for AUC); its lower bound is one-sided "
                                                 f"{(1 + self.level) / 2:.1%}",
                "min_positives": self.min_positives, "min_negatives": self.min_negatives, "ece_bins": self.bins}
