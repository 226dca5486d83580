"""Known values for the Wilson interval, the exact McNemar test and percentiles."""

import math

import pytest

from evals.statistics import mcnemar_exact_p, percentile, wilson_interval


@pytest.mark.parametrize(
    ("successes", "total", "expected"),
    [
        (4, 5, (0.3755, 0.9638)),
        (5, 5, (0.5655, 1.0)),
        (2, 5, (0.1176, 0.7693)),
        (0, 10, (0.0, 0.2775)),
        (50, 100, (0.4038, 0.5962)),
    ],
)
def test_wilson_interval_matches_published_values(successes, total, expected):
    lower, upper = wilson_interval(successes=successes, total=total)
    assert lower == pytest.approx(expected[0], abs=5e-5)
    assert upper == pytest.approx(expected[1], abs=5e-5)


def test_wilson_interval_is_exact_at_the_edges_and_none_without_trials():
    assert wilson_interval(successes=0, total=3)[0] == 0.0
    assert wilson_interval(successes=3, total=3)[1] == 1.0
    assert wilson_interval(successes=0, total=0) is None
    with pytest.raises(ValueError):
        wilson_interval(successes=4, total=3)


@pytest.mark.parametrize(
    ("right_to_wrong", "wrong_to_right", "expected"),
    [
        (0, 0, 1.0),
        (3, 0, 0.25),  # 2 * (1/2)^3
        (0, 3, 0.25),
        (1, 6, 0.125),  # 2 * (1 + 7) / 128
        (5, 5, 1.0),
        (2, 0, 0.5),
        (10, 0, 2 / 1024),
        (0, 20, 2 / 2**20),
    ],
)
def test_mcnemar_exact_p(right_to_wrong, wrong_to_right, expected):
    assert mcnemar_exact_p(right_to_wrong=right_to_wrong, wrong_to_right=wrong_to_right) == pytest.approx(expected)


def test_mcnemar_matches_direct_binomial_sum():
    b, c = 4, 13
    n = b + c
    direct = 2 * sum(math.comb(n, k) for k in range(b + 1)) / 2**n
    assert mcnemar_exact_p(right_to_wrong=b, wrong_to_right=c) == pytest.approx(direct)
    assert mcnemar_exact_p(right_to_wrong=c, wrong_to_right=b) == pytest.approx(direct)


def test_percentile_interpolates_linearly():
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([1.0, 2.0], 0.5) == 1.5
    values = list(range(1, 21))  # 1..20
    assert percentile(values, 0.5) == 10.5
    assert percentile(values, 0.95) == pytest.approx(19.05)
    assert percentile(list(reversed(values)), 1.0) == 20
    with pytest.raises(ValueError):
        percentile(values, 1.5)
