"""The paper's sampling estimator, corrected: directions uniform on the whole sphere, [0,1] output scale.

For each anchor z the neighbours are z' = z + r U^(1/d) u with u uniform on the unit sphere (the original
code drew u from the positive orthant only), and the anchor's value is the largest quotient
||G(z', y) - G(z, y)|| / ||z' - z||. Random directions in high dimension rarely meet the top singular
direction of the Jacobian, so this is an estimate from below, often a loose one (see ``gradient``).
"""

from __future__ import annotations

import torch

from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.threat import uniform_ball


def decode_flat(gen: torch.nn.Module, z: torch.Tensor, label: int) -> torch.Tensor:
    """decode(z, label) flattened to (batch, pixels): the [0,1] space in which eps is measured."""
    y = torch.full((z.shape[0],), int(label), dtype=torch.long, device=z.device)
    return gen.decode(z, y).flatten(1)  # type: ignore[operator]


def neighbor_offsets(seed: int, label: int, index: int, neighbors: int, latent_dim: int,
                     radius: float) -> torch.Tensor:
    """Offsets of one anchor's neighbours, uniform in the radius-r ball (drawn on CPU: device-independent)."""
    rng = make_generator(derive_seed(seed, "neighbors", label, index))
    return uniform_ball((neighbors, latent_dim), radius, generator=rng, device="cpu")


def sampling_values(gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float, neighbors: int,
                    seed: int, batch_size: int) -> tuple[torch.Tensor, int]:
    """Per-anchor maxima of the difference quotient over ``neighbors`` random neighbours.

    Work is a stream of (anchor, neighbour) pairs decoded ``batch_size`` at a time, so memory stays bounded
    for any neighbour count; the draws depend only on (seed, class, anchor index), never on the batching.
    Returns the values and the number of generator evaluations (one per decoded latent).
    """
    n, latent_dim = anchors.shape
    device = anchors.device
    values = torch.zeros(n, dtype=torch.float32, device=device)
    per_chunk = max(1, batch_size // neighbors)
    evaluations = 0
    with torch.no_grad(), task(f"sampling class {label}", n) as progress:
        for start in range(0, n, per_chunk):
            idx = torch.arange(start, min(n, start + per_chunk), device=device)
            base = decode_flat(gen, anchors[idx], label)
            offsets = torch.cat([neighbor_offsets(seed, label, int(i), neighbors, latent_dim, radius)
                                 for i in idx.tolist()]).to(device=device, dtype=anchors.dtype)
            owner = torch.arange(len(idx), device=device).repeat_interleave(neighbors)
            for lo in range(0, offsets.shape[0], batch_size):
                rows = owner[lo:lo + batch_size]
                z = anchors[idx][rows]
                z_prime = z + offsets[lo:lo + batch_size]
                quotient = _quotient(decode_flat(gen, z_prime, label), base[rows], z_prime - z)
                values.scatter_reduce_(0, idx[rows], quotient.to(values.dtype), reduce="amax")
            evaluations += len(idx) * (neighbors + 1)
            advance(progress, len(idx))
    return values, evaluations


def _quotient(x_prime: torch.Tensor, x: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """||x' - x|| / ||dz|| per row (rows of zero displacement give 0, not NaN)."""
    num = (x_prime - x).norm(dim=1)
    den = dz.flatten(1).norm(dim=1)
    return torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))
