"""How a reference profile is made: the settings of the drift tests and of their calibration, typed,
with why each default is what it is (the CLI's defaults come from here). Import-light on purpose."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ReferenceSettings:
    # Window sizes to calibrate thresholds for. On HAM10000, windows of 50 already catch ISIC 2017 and
    # the blur and JPEG shifts (benchmarks/drift.py); 200 is the window. A reference needs
    # twice the largest (each calibration window is compared with the rest).
    windows: tuple[int, ...] = (50, 100, 200)
    # The false-alarm rate per window in-distribution windows should give, all tests together.
    target: float = 0.05
    # In-distribution windows measured per size: at 500, a 5% rate is known to about +-1 point.
    draws: int = 500
    # Embeddings are compared in this many principal components of the reference's (fitted on the
    # reference only): the kernel then costs 32 instead of 1280 multiplications per pair.
    pca_dims: int = 32
    # Permutations of the embeddings' MMD test: p-values in steps of 1/501, finer than the thresholds
    # the calibration sets (about 0.01).
    permutations: int = 500
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)
