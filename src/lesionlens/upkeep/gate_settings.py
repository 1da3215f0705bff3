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
    # shown may be off by at most two more points on average". Measured on HAM10000 validation, the
    # default-recipe champion's melanoma score has ECE 0.079 and its malignant score 0.109 (its
    # class-balanced loss inflates the rare classes), so 0.02 is a quarter of that or less.
    ece_margin: float = 0.02
    # Brier score of the view's score: 0.01. The same champion's melanoma Brier is 0.066 (8% of the
    # images are melanomas) and its malignant Brier 0.089: 0.01 is a seventh to a ninth of them.
    brier_margin: float = 0.01
    # 2,000 resamples: the 2.5% tail of a percentile interval then rests on 50 resamples (1,000, the
    # evaluation report's default, on 25). Measured over 8 seeds on HAM10000 validation (a noisier
    # copy of a model against it): the lower bound's sd was 0.002-0.005 for sensitivity (it moves in
    # steps of one positive, 1/99 for melanoma) and at most 0.001 for the other bootstrap criteria.
    resamples: int = 2000
    seed: int = 0
    level: float = 0.95  # two-sided: the lower bound is one-sided 97.5% (why: lesionlens.upkeep.noninferiority)
    # With 20 positives a sensitivity's own 95% interval is already a third of the scale wide (Wilson,
    # 16 of 20: [0.58, 0.92]); below that the percentile bootstrap under-covers on so few values.
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
