"""A confidence level for the slack of a percentile Lipschitz constant (Clopper-Pearson).

From n anchors drawn from the latent distribution, k of which have a per-anchor value above the chosen L,
the latent measure delta of the set where the per-anchor property fails satisfies, with probability at least
``confidence`` over the draw of the anchors, delta <= clopper_pearson_upper(k, n, confidence).

This also holds when L is chosen from the same anchors as an order statistic or anything between two
consecutive order statistics (a percentile): if L lies in [v_(n-k), v_(n-k+1)) then {v > L} is contained in
{v > v_(n-k)}, whose measure has the Beta(k + 1, n - k) distribution for continuous values (Wilks), and the
Clopper-Pearson limit is exactly that Beta quantile. Atoms in the distribution only make it conservative.
With certified per-anchor values the property is certain at each anchor, so the bound is a high-probability
certificate; with estimated values (gradient, sampling) it inherits their optimism.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy import stats

from intrinsic_robustness.errors import UserInputError


def _check(k: int, n: int, confidence: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserInputError(f"anchors n={n!r}: must be a positive integer")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n:
        raise UserInputError(f"exceeding anchors k={k!r}: must be an integer between 0 and n={n}")
    if not (isinstance(confidence, int | float) and 0.0 < confidence < 1.0):
        raise UserInputError(f"--confidence {confidence!r}: must be strictly between 0 and 1, e.g. 0.95")


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided upper confidence limit of a binomial proportion: the p with P(Bin(n, p) <= k) = 1 - confidence
    (the Beta(k + 1, n - k) quantile at ``confidence``); 1 when k = n.

    >>> round(clopper_pearson_upper(0, 100, 0.95), 6)  # 1 - 0.05 ** (1 / 100)
    0.029513
    """
    _check(k, n, confidence)
    if k == n:
        return 1.0
    if k == 0:
        return -math.expm1(math.log1p(-confidence) / n)  # closed form, accurate for tiny values
    return float(stats.beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True)
class Exceedance:
    """The anchors above a chosen L and the slack delta that holds with probability ``confidence``."""

    lipschitz: float
    n: int
    exceeding: tuple[int, ...]  # indices of the anchors whose value is above ``lipschitz``
    slack: float
    confidence: float

    @property
    def k(self) -> int:
        return len(self.exceeding)


def exceedance_slack(values: torch.Tensor | Sequence[float], lipschitz: float, confidence: float) -> Exceedance:
    """Anchors whose per-anchor value exceeds ``lipschitz`` and the Clopper-Pearson slack for them."""
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise UserInputError("per-anchor values are empty; run the Lipschitz estimation with at least one anchor")
    if torch.isnan(v).any():
        raise UserInputError("per-anchor values contain NaN; rerun the Lipschitz estimation")
    if not isinstance(lipschitz, int | float) or math.isnan(lipschitz):
        raise UserInputError(f"lipschitz {lipschitz!r}: must be a number")
    above = torch.nonzero(v > float(lipschitz)).flatten().tolist()
    slack = clopper_pearson_upper(len(above), int(v.numel()), confidence)
    return Exceedance(float(lipschitz), int(v.numel()), tuple(int(i) for i in above), slack, float(confidence))


def percentile_slack(values: torch.Tensor | Sequence[float], quantile: float, confidence: float) -> Exceedance:
    """L = the ``quantile`` of the per-anchor values (linear interpolation, as the Lipschitz summaries use;
    1.0 is the maximum), and its Clopper-Pearson slack."""
    if not (isinstance(quantile, int | float) and 0.0 < quantile <= 1.0):
        raise UserInputError(f"quantile {quantile!r}: must be in (0, 1], e.g. 0.99 for p99")
    v = torch.as_tensor(values, dtype=torch.float64).flatten()
    if v.numel() == 0:
        raise UserInputError("per-anchor values are empty; run the Lipschitz estimation with at least one anchor")
    level = float(torch.quantile(v, torch.tensor(float(quantile), dtype=torch.float64)))
    return exceedance_slack(v, level, confidence)
