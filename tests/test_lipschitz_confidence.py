"""Clopper-Pearson slack: against brute-force binomial sums, closed forms, Monte Carlo coverage, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.confidence import (
    clopper_pearson_upper,
    exceedance_slack,
    percentile_slack,
)


def binom_cdf(k: int, n: int, p: float) -> float:
    """P(Bin(n, p) <= k) by direct summation in log space (independent of scipy)."""
    if p >= 1.0:
        return 0.0 if k < n else 1.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * math.log(p)
             + (n - i) * math.log1p(-p) for i in range(k + 1)]
    top = max(terms)
    return math.exp(top) * sum(math.exp(t - top) for t in terms)


def bisect_upper(k: int, n: int, confidence: float) -> float:
    """The p solving P(Bin(n, p) <= k) = 1 - confidence, by bisection on the brute-force CDF."""
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if binom_cdf(k, n, mid) > 1 - confidence else (lo, mid)
    return (lo + hi) / 2


@given(n=st.integers(1, 300), frac=st.floats(0, 1), confidence=st.sampled_from([0.5, 0.8, 0.9, 0.95, 0.99, 0.999]))
def test_matches_brute_force_binomial_sums(n: int, frac: float, confidence: float) -> None:
    k = min(n, int(frac * n))
    upper = clopper_pearson_upper(k, n, confidence)
    if k == n:
        assert upper == 1.0
        return
    assert upper == pytest.approx(bisect_upper(k, n, confidence), rel=1e-6, abs=1e-12)
    assert binom_cdf(k, n, upper) == pytest.approx(1 - confidence, rel=1e-6, abs=1e-12)


@given(n=st.integers(1, 10_000), confidence=st.floats(0.01, 0.999))
def test_zero_exceedances_closed_form(n: int, confidence: float) -> None:
    assert clopper_pearson_upper(0, n, confidence) == pytest.approx(1 - (1 - confidence) ** (1 / n), rel=1e-9)


def test_edge_cases() -> None:
    assert clopper_pearson_upper(0, 1, 0.95) == pytest.approx(0.95)
    assert clopper_pearson_upper(1, 1, 0.95) == 1.0
    assert clopper_pearson_upper(5, 5, 0.5) == 1.0
    ups = [clopper_pearson_upper(k, 50, 0.95) for k in range(51)]
    assert all(a < b for a, b in zip(ups, ups[1:], strict=False))  # more exceedances, larger slack
    assert clopper_pearson_upper(2, 100, 0.99) > clopper_pearson_upper(2, 100, 0.9)
    assert clopper_pearson_upper(2, 1000, 0.95) < clopper_pearson_upper(2, 100, 0.95)


@pytest.mark.parametrize("n,p", [(10, 0.05), (50, 0.01), (50, 0.2), (200, 0.003), (200, 0.5)])
@pytest.mark.parametrize("confidence", [0.9, 0.95])
def test_monte_carlo_coverage(n: int, p: float, confidence: float) -> None:
    """The true proportion lies below the upper limit in at least ``confidence`` of simulated draws."""
    draws = 20_000
    rng = torch.Generator().manual_seed(n * 1000 + int(p * 1e4))
    k = (torch.rand(draws, n, generator=rng) < p).sum(dim=1)
    limits = torch.tensor([clopper_pearson_upper(i, n, confidence) for i in range(n + 1)])
    coverage = float((limits[k] >= p).double().mean())
    assert coverage >= confidence - 3 * math.sqrt(confidence * (1 - confidence) / draws)


@pytest.mark.parametrize("quantile,n", [(0.99, 100), (0.95, 60), (0.9, 30), (1.0, 40)])
def test_percentile_threshold_coverage(quantile: float, n: int) -> None:
    """L chosen from the same anchors (a percentile) still gets a valid slack: uniform values, so the true
    failing measure of {v > L} is 1 - L."""
    trials, confidence = 4000, 0.9
    rng = torch.Generator().manual_seed(7 + n)
    values = torch.rand(trials, n, generator=rng, dtype=torch.float64)
    levels = torch.quantile(values, quantile, dim=1)
    k = (values > levels[:, None]).sum(dim=1)
    limits = torch.tensor([clopper_pearson_upper(i, n, confidence) for i in range(n + 1)], dtype=torch.float64)
    for row, level, slack in list(zip(values, levels, limits[k], strict=True))[:40]:  # the helper agrees
        result = percentile_slack(row, quantile, confidence)
        assert result.lipschitz == pytest.approx(float(level)) and result.slack == pytest.approx(float(slack))
    coverage = float(((1 - levels) <= limits[k]).double().mean())
    assert coverage >= confidence - 3 * math.sqrt(confidence * (1 - confidence) / trials)


def test_exceedance_reports_the_anchors() -> None:
    values = torch.tensor([1.0, 5.0, 2.0, 7.0, 3.0])
    result = exceedance_slack(values, 4.0, 0.95)
    assert result.exceeding == (1, 3) and result.k == 2 and result.n == 5
    assert result.slack == pytest.approx(clopper_pearson_upper(2, 5, 0.95))
    assert exceedance_slack(values, 7.0, 0.95).k == 0  # equal to L is not an exceedance
    assert percentile_slack(values, 1.0, 0.95).lipschitz == 7.0


@pytest.mark.parametrize("k,n,confidence,word", [
    (3, 2, 0.95, "k=3"), (-1, 5, 0.95, "k=-1"), (0, 0, 0.95, "n=0"), (1, 5, 1.0, "--confidence"),
    (1, 5, 0.0, "--confidence"), (1, 5, -0.5, "--confidence"), (1.5, 5, 0.9, "k=1.5"), (1, 5.0, 0.9, "n=5.0"),
])
def test_bad_inputs_are_one_line_errors(k, n, confidence, word) -> None:  # noqa: ANN001
    with pytest.raises(UserInputError) as info:
        clopper_pearson_upper(k, n, confidence)
    assert word in str(info.value) and "\n" not in str(info.value)


def test_bad_values_are_one_line_errors() -> None:
    for call in (lambda: exceedance_slack([], 1.0, 0.9), lambda: exceedance_slack([float("nan")], 1.0, 0.9),
                 lambda: percentile_slack([1.0], 0.0, 0.9), lambda: percentile_slack([1.0, 2.0], 1.5, 0.9),
                 lambda: exceedance_slack([1.0], float("nan"), 0.9)):
        with pytest.raises(UserInputError) as info:
            call()
        assert "\n" not in str(info.value)
