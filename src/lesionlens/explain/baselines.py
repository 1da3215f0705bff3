"""Maps that know nothing of the model, to compare every method with (torch-free).

``random``: uniform noise, seeded. ``centre``: a Gaussian bump at the image's centre. Dermoscopy
centres the lesion, so "look at the middle" is a strong guess that a method must beat to show it
sees anything; sigma = 0.25 of the side by default, whose one-sigma disc covers 20% of the image,
about an ISIC 2017 lesion's mean area share (19%).
"""

from __future__ import annotations

import numpy as np

BASELINES = ("random", "centre")
CENTRE_SIGMA = 0.25  # of the shorter side


def centred_gaussian(n: int, height: int, width: int, sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """N copies of a Gaussian bump at the image's centre, ``sigma`` a fraction of the shorter side."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    s = sigma * min(height, width)
    bump = np.exp(-(((yy - (height - 1) / 2) ** 2 + (xx - (width - 1) / 2) ** 2) / (2 * s * s)))
    return np.broadcast_to(bump.astype(np.float32), (n, height, width)).copy()


def random_maps(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, height, width)).astype(np.float32)


def baseline_maps(kind: str, n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    if kind == "random":
        return random_maps(n, *size, seed=seed)
    if kind == "centre":
        return centred_gaussian(n, *size)
    raise ValueError(f"unknown baseline map {kind!r}; choose from {', '.join(BASELINES)}")
