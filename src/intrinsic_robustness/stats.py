"""Exact small-sample statistics for reported figures: Clopper-Pearson intervals and McNemar's exact test.

Every accuracy the toolkit shows is a binomial proportion over n test points; these give its sampling
uncertainty and say whether two classifiers scored on the same points really differ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from intrinsic_robustness.errors import UserInputError

CONFIDENCE = 0.95


def clopper_pearson(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion (conservative: coverage >= ``confidence``).

    >>> clopper_pearson(0, 10)[0], round(clopper_pearson(10, 10)[0], 4)
    (0.0, 0.6915)
    """
    from scipy.stats import beta

    if n < 0 or not 0 <= successes <= n:
        raise UserInputError(f"clopper_pearson: need 0 <= successes ({successes}) <= n ({n})")
    if not 0 < confidence < 1:
        raise UserInputError(f"clopper_pearson: confidence {confidence} must lie in (0, 1)")
    if n == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - tail, successes + 1, n - successes))
    return low, high


def proportion_ci(fraction: float, n: int, confidence: float = CONFIDENCE) -> list[float] | None:
    """The Clopper-Pearson interval of a fraction measured on n points (None where the fraction is unknown)."""
    if fraction is None or n <= 0 or not math.isfinite(float(fraction)):
        return None
    return list(clopper_pearson(round(float(fraction) * n), n, confidence))


def mcnemar(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value from the discordant counts (a right where b is wrong, and the reverse).

    >>> mcnemar(0, 0), round(mcnemar(0, 6), 4)
    (1.0, 0.0312)
    """
    from scipy.stats import binom

    if a_only < 0 or b_only < 0:
        raise UserInputError(f"mcnemar: discordant counts {a_only}, {b_only} must be >= 0")
    total = a_only + b_only
    if total == 0:
        return 1.0
    return float(min(1.0, 2 * binom.cdf(min(a_only, b_only), total, 0.5)))


def paired_mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, float | int]:
    """McNemar's exact test on two per-example correctness vectors over the same points."""
    if len(correct_a) != len(correct_b):
        raise UserInputError(f"paired_mcnemar: {len(correct_a)} and {len(correct_b)} examples; need the same points")
    a_only = sum(1 for a, b in zip(correct_a, correct_b, strict=True) if a and not b)
    b_only = sum(1 for a, b in zip(correct_a, correct_b, strict=True) if b and not a)
    return {"n": len(correct_a), "a_only": a_only, "b_only": b_only, "p_value": mcnemar(a_only, b_only)}
