"""Nearest-neighbour work as chunked torch matrix products (no Python loop over points)."""

from __future__ import annotations

import torch

from intrinsic_robustness.progress import advance, task

DEFAULT_CHUNK = 1024


def sq_norms(x: torch.Tensor) -> torch.Tensor:
    """Squared row norms, in float64 accumulation for stable distances."""
    return (x.double() ** 2).sum(1).to(x.dtype)


def distances(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor | None = None,
              b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]`` by ||a||^2 + ||b||^2 - 2 a.b (one matrix product)."""
    a_sq = sq_norms(a) if a_sq is None else a_sq
    b_sq = sq_norms(b) if b_sq is None else b_sq
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_(min=0.0).sqrt_()


def kth_neighbour(x: torch.Tensor, ks: list[int], chunk: int = DEFAULT_CHUNK,
                  description: str = "nearest neighbours") -> torch.Tensor:
    """Distance from every row of ``x`` to its k-th nearest other row, for each k: ``[len(ks), len(x)]``."""
    kmax = max(ks)
    if kmax >= len(x):
        raise ValueError(f"k = {kmax} neighbours needs more than {len(x)} points")
    x_sq = sq_norms(x)
    rows = []
    index = torch.tensor([k - 1 for k in ks], device=x.device)
    with task(description, len(x)) as handle:
        for start in range(0, len(x), chunk):
            stop = min(len(x), start + chunk)
            d = distances(x[start:stop], x, x_sq[start:stop], x_sq)
            d[torch.arange(stop - start, device=x.device), torch.arange(start, stop, device=x.device)] = float("inf")
            nearest = d.topk(kmax, dim=1, largest=False, sorted=True).values
            rows.append(nearest[:, index].T)
            advance(handle, stop - start)
    return torch.cat(rows, dim=1)


def block_distances(centres: torch.Tensor, x: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distances ``[len(centres), len(x)]``, computed ``chunk`` columns at a time."""
    c_sq = sq_norms(centres)
    x_sq = sq_norms(x)
    return torch.cat([distances(centres, x[s:s + chunk], c_sq, x_sq[s:s + chunk])
                      for s in range(0, len(x), chunk)], dim=1)


def ball_margin(x: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor,
                chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """For each row of ``x``, min over balls of (distance to centre - radius): <= 0 inside the union, <= eps in
    its eps-expansion."""
    if len(centres) == 0:
        return torch.full((len(x),), float("inf"), device=x.device, dtype=x.dtype)
    c_sq = sq_norms(centres)
    x_sq = sq_norms(x)
    out = [(distances(x[s:s + chunk], centres, x_sq[s:s + chunk], c_sq) - radii[None, :]).min(dim=1).values
           for s in range(0, len(x), chunk)]
    return torch.cat(out)
