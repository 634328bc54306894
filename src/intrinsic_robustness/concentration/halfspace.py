"""Half-spaces {x : w.x <= t} (Prescott, Zhang, Evans 2021): directions from principal components of the
fitting half (and a sparsifying power transform of them), thresholds at the alpha quantile, both sides.

The eps-expansion of a half-space with unit normal w is {x : w.x <= t + eps}, so every measure is a count of
projections below a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from intrinsic_robustness.concentration.split import target_count

DEFAULT_COMPONENTS = 50
DEFAULT_POWERS = (1.0, 2.0, 3.0)


@dataclass(frozen=True)
class Candidates:
    """Unit directions ``[K, D]`` (each in both signs) and where each came from."""

    directions: torch.Tensor
    labels: list[str]


def principal_directions(x: torch.Tensor, components: int) -> torch.Tensor:
    """The top ``components`` principal directions of ``x`` (rows ``[k, D]``, by decreasing variance)."""
    centred = (x - x.mean(0, keepdim=True)).double()
    cov = centred.T @ centred / max(1, len(x) - 1)
    values, vectors = torch.linalg.eigh(cov)
    order = values.argsort(descending=True)[: min(components, x.shape[1])]
    return vectors[:, order].T.to(x.dtype)


def candidate_directions(x: torch.Tensor, components: int = DEFAULT_COMPONENTS,
                         powers: Sequence[float] = DEFAULT_POWERS) -> Candidates:
    """Principal directions raised elementwise to each power (sign kept, renormalised), in both signs."""
    pcs = principal_directions(x, components)
    rows, labels = [], []
    for power in powers:
        w = pcs.sign() * pcs.abs() ** float(power)
        w = w / w.norm(dim=1, keepdim=True).clamp_min(1e-30)
        for sign, name in ((1.0, "+"), (-1.0, "-")):
            rows.append(sign * w)
            labels.extend(f"{name}pc{i + 1}^{power:g}" for i in range(len(w)))
    return Candidates(torch.cat(rows), labels)


def fit_halfspace(x: torch.Tensor, alpha: float, eps: float, candidates: Candidates,
                  projections: torch.Tensor | None = None) -> dict[str, object]:
    """The candidate half-space with measure >= alpha on ``x`` whose eps-expansion holds the fewest points.

    The threshold is the ceil(alpha n)-th smallest projection, so at least alpha of the fitting points lie in
    the region (the finite-sample side: never below alpha on the points it was fitted on)."""
    p = x @ candidates.directions.T if projections is None else projections
    m = target_count(alpha, len(x))
    thresholds = p.kthvalue(m, dim=0).values
    adv = (p <= thresholds[None, :] + eps).sum(0)
    best = int(torch.argmin(adv))  # first minimum: deterministic
    inside = int((p[:, best] <= thresholds[best]).sum())
    return {"index": best, "label": candidates.labels[best], "direction": candidates.directions[best],
            "threshold": float(thresholds[best]), "inside": inside, "expanded": int(adv[best])}


def halfspace_counts(x: torch.Tensor, direction: torch.Tensor, threshold: float, eps: float) -> tuple[int, int]:
    """Points of ``x`` in {w.x <= t} and in its eps-expansion {w.x <= t + eps}."""
    p = x @ direction.to(x.dtype)
    return int((p <= threshold).sum()), int((p <= threshold + eps).sum())
