"""Clopper-Pearson intervals against exact binomial sums and by simulated coverage; McNemar by brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.stats import binom

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.stats import clopper_pearson, mcnemar, paired_mcnemar, proportion_ci


@pytest.mark.parametrize("n", [1, 7, 30, 200])
def test_interval_ends_solve_the_exact_binomial_tails(n):
    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        low, high = clopper_pearson(k, n)
        assert 0.0 <= low <= k / n <= high <= 1.0
        if k > 0:  # P(X >= k | p = low) = 2.5%
            assert binom.sf(k - 1, n, low) == pytest.approx(0.025, abs=1e-9)
        if k < n:  # P(X <= k | p = high) = 2.5%
            assert binom.cdf(k, n, high) == pytest.approx(0.025, abs=1e-9)


@pytest.mark.parametrize("p", [0.02, 0.3, 0.5, 0.9])
def test_coverage_by_simulation_is_at_least_nominal(p):
    rng = np.random.default_rng(0)
    n, trials = 60, 2000
    ks = rng.binomial(n, p, size=trials)
    table = {k: clopper_pearson(int(k), n) for k in np.unique(ks)}
    covered = np.mean([table[k][0] <= p <= table[k][1] for k in ks])
    assert covered >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_proportion_ci_and_bad_input():
    assert proportion_ci(0.5, 10) == pytest.approx(list(clopper_pearson(5, 10)))
    assert proportion_ci(float("nan"), 10) is None and proportion_ci(0.5, 0) is None
    for bad in [(5, 4), (-1, 3)]:
        with pytest.raises(UserInputError):
            clopper_pearson(*bad)


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (0, 5), (3, 9), (10, 10), (1, 20)])
def test_mcnemar_equals_brute_force_enumeration(a_only, b_only):
    total = a_only + b_only
    observed = abs(a_only - b_only)
    # two-sided exact test: every assignment of the discordant pairs at least as unbalanced, each 2^-total
    extreme = sum(1 for bits in itertools.product([0, 1], repeat=total) if abs(2 * sum(bits) - total) >= observed)
    assert mcnemar(a_only, b_only) == pytest.approx(min(1.0, extreme / 2 ** total) if total else 1.0)


def test_paired_mcnemar_counts_discordant_pairs():
    a = [True, True, False, False, True]
    b = [True, False, True, False, False]
    out = paired_mcnemar(a, b)
    assert (out["a_only"], out["b_only"], out["n"]) == (2, 1, 5)
    with pytest.raises(UserInputError):
        paired_mcnemar(a, b[:3])
