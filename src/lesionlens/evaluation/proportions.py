"""Confidence intervals for a proportion (a sensitivity, a specificity) from its two counts.

Wilson's score interval: unlike the normal approximation it stays inside [0, 1] and keeps close
to its nominal coverage for the small subgroups a study table has (Brown, Cai & DasGupta 2001).
Standard library only, so the server's study page uses it too.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(estimate, low, high) of ``successes / n``; all nan when ``n`` is 0."""
    if not 0 <= successes <= n:
        raise ValueError(f"{successes} successes out of {n}")
    if n == 0:
        return math.nan, math.nan, math.nan
    z = NormalDist().inv_cdf(0.5 + level / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends, not rounding error
    high = 1.0 if successes == n else min(1.0, centre + half)
    return p, low, high
