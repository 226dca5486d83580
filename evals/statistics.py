"""Small exact statistics for eval scores, in pure Python.

* ``wilson_interval``: the Wilson score interval for a binomial proportion. It
  stays inside [0, 1] and is honest at the tiny counts an eval has (5 tickets a
  team), where the normal ("Wald") interval collapses to zero width at 5/5.
* ``mcnemar_exact_p``: the exact two-sided McNemar test, i.e. a binomial test
  with p = 1/2 on the discordant pairs (tickets that flipped). With a handful of
  flips the chi-square approximation is badly off; the exact sum is cheap.
* ``percentile``: linear interpolation between closest ranks (NumPy's default),
  so p50 of two values is their mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

# The 97.5th percentile of the standard normal distribution (two-sided 95%).
Z_95 = 1.959963984540054


def wilson_interval(*, successes: int, total: int, z: float = Z_95) -> tuple[float, float] | None:
    """The Wilson score interval for ``successes`` out of ``total``; ``None`` when there is no trial."""
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return None
    proportion = successes / total
    z_squared = z * z
    denominator = 1 + z_squared / total
    centre = (proportion + z_squared / (2 * total)) / denominator
    half_width = (z / denominator) * math.sqrt(proportion * (1 - proportion) / total + z_squared / (4 * total * total))
    # Clamp rounding noise: at 0/n the lower bound is exactly 0, at n/n the upper is exactly 1.
    lower = 0.0 if successes == 0 else max(0.0, centre - half_width)
    upper = 1.0 if successes == total else min(1.0, centre + half_width)
    return (lower, upper)


def mcnemar_exact_p(*, right_to_wrong: int, wrong_to_right: int) -> float:
    """Exact two-sided McNemar p-value over the discordant pairs.

    Under "no difference" each flip is equally likely to go either way, so the
    smaller flip count follows Binomial(b + c, 1/2); the two-sided p-value
    doubles its lower tail, capped at 1. No flips at all means no evidence: 1.0.
    """
    if right_to_wrong < 0 or wrong_to_right < 0:
        raise ValueError("flip counts cannot be negative")
    discordant = right_to_wrong + wrong_to_right
    if discordant == 0:
        return 1.0
    smaller = min(right_to_wrong, wrong_to_right)
    tail = Fraction(sum(math.comb(discordant, k) for k in range(smaller + 1)), 2**discordant)
    return float(min(Fraction(1), 2 * tail))


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` (0..1) percentile by linear interpolation; ``None`` for no values."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be within [0, 1], got {fraction}")
    ordered = sorted(values)
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    below = math.floor(position)
    above = math.ceil(position)
    if below == above:
        return float(ordered[below])
    weight = position - below
    return float(ordered[below] * (1 - weight) + ordered[above] * weight)
