"""Unions of L2 balls (Mahloujifar, Zhang, Mahmoody, Evans 2019): balls centred at fitting points with radii
from k-nearest-neighbour distances, chosen greedily (fewest newly expanded points per newly covered point)
until the union holds alpha of the fitting half (its centres left out of every count); k (the radius)
searched on the fitting half.

The candidate centres for one k are the ``max_centres`` fitting points with the smallest k-NN radius (the
densest places); their distances to every fitting point are one chunked matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from intrinsic_robustness.concentration.knn import DEFAULT_CHUNK, block_distances, kth_neighbour
from intrinsic_robustness.concentration.split import target_count
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.progress import advance, task

DEFAULT_MAX_BALLS = 100
DEFAULT_MAX_CENTRES = 2000
BALL_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)  # T grid: k = ceil(target / T) - 1 neighbours per ball
MIN_NEIGHBOURS = 10  # smaller kNN balls overfit: the greedy picks the ones that happen to be tight


@dataclass(frozen=True)
class Candidates:
    """Candidate balls for one k: centre indices into the fitting half and their distances to it."""

    k: int
    centres: torch.Tensor  # [m] long
    radii: torch.Tensor  # [m]
    dist: torch.Tensor  # [m, n_fit]


def neighbour_grid(alpha: float, n: int, max_balls: int, knn: Sequence[int] | None = None) -> list[int]:
    """The k values searched: given ones, or k = ceil(alpha n / T) - 1 for T in the ball-count grid (<= max_balls),
    at least ``MIN_NEIGHBOURS`` where the target allows."""
    if knn:
        ks = sorted({int(k) for k in knn})
        if ks[0] < 1 or ks[-1] >= n:
            raise UserInputError(f"--knn {ks}: each k must lie in 1..{n - 1} (the fitting half has {n} points)")
        return ks
    target = target_count(alpha, n)
    counts = [t for t in BALL_COUNTS if t <= max_balls] or [max_balls]
    ks = sorted({min(n - 1, max(1, -(-target // t) - 1)) for t in counts})
    return [k for k in ks if k >= MIN_NEIGHBOURS] or ks[-1:]


def candidate_balls(x: torch.Tensor, radii: torch.Tensor, k: int, max_centres: int,
                    chunk: int = DEFAULT_CHUNK) -> Candidates:
    """The ``max_centres`` densest centres for this k, with radii re-read from their own distance rows (so the
    k-th neighbour lies exactly on its ball's boundary)."""
    m = min(max_centres, len(x))
    centres = radii.topk(m, largest=False, sorted=True).indices.sort().values
    dist = block_distances(x[centres], x, chunk)
    dist[torch.arange(m, device=x.device), centres] = 0.0
    exact = dist.kthvalue(k + 1, dim=1).values  # the centre itself (0) plus k neighbours
    return Candidates(k, centres, exact, dist)


def greedy_union(cand: Candidates, target: int, eps: float, max_balls: int) -> dict[str, object] | None:
    """Greedily add balls until ``target`` fitting points other than the chosen centres are covered (the last
    ball shrunk to stop exactly there); None when ``max_balls`` balls cannot reach it.

    A ball's own centre always lies in it, so counting it would overstate coverage (a 1-NN ball holds two
    fitting points but about one point's worth of mass): centres count in neither the region nor its expansion."""
    inside = cand.dist <= cand.radii[:, None]
    expand = cand.dist <= cand.radii[:, None] + eps
    n = inside.shape[1]
    covered = torch.zeros(n, dtype=torch.bool, device=inside.device)
    expanded, is_centre = torch.zeros_like(covered), torch.zeros_like(covered)
    gain_in, gain_ex = inside.sum(1) - 1, expand.sum(1) - 1  # new points besides the ball's own centre
    chosen, radii = [], []
    while int((covered & ~is_centre).sum()) < target and len(chosen) < max_balls:
        if int(gain_in.max()) <= 0:
            return None
        score = torch.where(gain_in > 0, gain_ex.double() / gain_in.clamp_min(1).double(), float("inf"))
        b = int(torch.argmin(score))
        is_centre[cand.centres[b]] = True
        need = target - int((covered & ~is_centre).sum())
        new = inside[b] & ~covered
        radius = float(cand.radii[b])
        counted = new & ~is_centre
        if int(counted.sum()) > need:  # the last ball: just large enough to reach the target
            radius = float(cand.dist[b][counted].kthvalue(need).values)
            new = new & (cand.dist[b] <= radius)
        grown = (cand.dist[b] <= radius + eps) & ~expanded
        gain_in -= inside[:, new].sum(1)
        gain_ex -= expand[:, grown].sum(1)
        covered |= new
        expanded |= grown
        gain_in[b] = 0
        chosen.append(int(cand.centres[b]))
        radii.append(radius)
    inside_count = int((covered & ~is_centre).sum())
    if inside_count < target:
        return None
    return {"centres": chosen, "radii": radii, "inside": inside_count,
            "expanded": int((expanded & ~is_centre).sum()), "others": n - len(chosen), "k": cand.k}


def fit_balls(x: torch.Tensor, alpha: float, eps_values: Sequence[float], max_balls: int = DEFAULT_MAX_BALLS,
              max_centres: int = DEFAULT_MAX_CENTRES, knn: Sequence[int] | None = None,
              chunk: int = DEFAULT_CHUNK, radii: dict[int, torch.Tensor] | None = None) -> list[dict[str, object]]:
    """For each eps, the union (over the k grid) whose expansion holds the fewest fitting points."""
    ks = neighbour_grid(alpha, len(x), max_balls, knn)
    if radii is None or any(k not in radii for k in ks):
        radii = dict(zip(ks, kth_neighbour(x, ks, chunk), strict=True))
    target = target_count(alpha, len(x))
    best: list[dict[str, object] | None] = [None] * len(eps_values)
    with task(f"balls alpha={alpha:g}", len(ks) * len(eps_values)) as handle:
        for k in ks:
            cand = candidate_balls(x, radii[k], k, max_centres, chunk)
            for i, eps in enumerate(eps_values):
                found = greedy_union(cand, target, float(eps), max_balls)
                if found is not None and (best[i] is None or found["expanded"] < best[i]["expanded"]):  # type: ignore[index,operator]
                    best[i] = found
                advance(handle)
            del cand
    missing = [e for e, b in zip(eps_values, best, strict=True) if b is None]
    if missing:
        raise UserInputError(f"balls: no union of at most {max_balls} balls holds alpha = {alpha:g} of the fitting "
                             f"half (k grid {ks}); raise --balls or --max-centres, or give larger --knn values")
    return best  # type: ignore[return-value]
