"""Sampling estimators: the paper's, as its code ran it, and the corrected one.

For each anchor z the neighbours are z' = z + r U^(1/d) u and the anchor's value is the largest quotient
||G(z', y) - G(z, y)|| / ||z' - z||. ``sampling`` (corrected) draws u uniform on the whole unit sphere and
measures on decode's [0, 1] output, the scale eps lives on. ``paper-sampling`` reproduces the paper's code
(``get_local_lipschitz`` in evansuva/Intrinsic-Rob): u = normalise(U[0,1]^d), directions in the positive
orthant only, and distances on the [-1, 1] tanh output, i.e. twice the [0, 1] distances. Random directions
in high dimension rarely meet the top singular direction of the Jacobian, so both are estimates from
below, often loose ones (see ``gradient``).
"""

from __future__ import annotations

from typing import Any

import torch

from intrinsic_robustness.lipschitz.base import Estimator, positive_int
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.threat import uniform_ball


def decode_flat(gen: torch.nn.Module, z: torch.Tensor, label: int) -> torch.Tensor:
    """decode(z, label) flattened to (batch, pixels): the [0,1] space in which eps is measured."""
    y = torch.full((z.shape[0],), int(label), dtype=torch.long, device=z.device)
    return gen.decode(z, y).flatten(1)  # type: ignore[operator]


class SamplingEstimator(Estimator):
    """The paper's estimator, corrected: ``neighbors`` neighbours uniform in the ball, [0, 1] output scale."""

    name = "sampling"
    label = "sampled (corrected)"
    bracket = 1

    def __init__(self, neighbors: int = 2000, batch_size: int = 1024) -> None:
        self.neighbors = positive_int("neighbors", neighbors)
        self.batch_size = positive_int("batch_size", batch_size)

    def offsets(self, seed: int, label: int, index: int, latent_dim: int, radius: float) -> torch.Tensor:
        return neighbor_offsets(seed, label, index, self.neighbors, latent_dim, radius)

    def values(self, gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
               seed: int, first: int = 0) -> tuple[torch.Tensor, int]:
        values, used = sampling_values(gen, anchors, label, radius, self, seed, first)
        return values * self.scale, used

    def chunk_size(self) -> int:
        return max(1, self.batch_size // self.neighbors)

    def parameters(self) -> dict[str, Any]:
        return {"neighbors": self.neighbors}


class PaperSamplingEstimator(SamplingEstimator):
    """The paper's code as it ran: positive-orthant directions, distances on the [-1, 1] tanh output."""

    name = "paper-sampling"
    label = "sampled (paper's code)"
    scale = 2.0  # distances on the [-1, 1] tanh output
    bracket = 0

    def offsets(self, seed: int, label: int, index: int, latent_dim: int, radius: float) -> torch.Tensor:
        return orthant_offsets(seed, label, index, self.neighbors, latent_dim, radius)

    def parameters(self) -> dict[str, Any]:
        return {"neighbors": self.neighbors, "directions": "normalise(U[0,1]^d): positive orthant",
                "output_scale": "[-1, 1] (2 x decode's [0, 1])"}


def neighbor_offsets(seed: int, label: int, index: int, neighbors: int, latent_dim: int,
                     radius: float) -> torch.Tensor:
    """Offsets of one anchor's neighbours, uniform in the radius-r ball (drawn on CPU: device-independent)."""
    rng = make_generator(derive_seed(seed, "neighbors", label, index))
    return uniform_ball((neighbors, latent_dim), radius, generator=rng, device="cpu")


def orthant_offsets(seed: int, label: int, index: int, neighbors: int, latent_dim: int,
                    radius: float) -> torch.Tensor:
    """The paper's neighbours: direction normalise(U[0,1]^d), radius r U^(1/d) (CPU draws)."""
    rng = make_generator(derive_seed(seed, "paper-neighbors", label, index))
    direction = torch.rand(neighbors, latent_dim, generator=rng)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-30)
    u = torch.rand(neighbors, generator=rng) + 1e-12
    return direction * (radius * u.pow(1.0 / latent_dim))[:, None]


def sampling_values(gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
                    estimator: SamplingEstimator, seed: int, first: int = 0) -> tuple[torch.Tensor, int]:
    """Per-anchor maxima of the difference quotient over ``neighbors`` random neighbours.

    Work is a stream of (anchor, neighbour) pairs decoded ``batch_size`` at a time, so memory stays bounded
    for any neighbour count; the draws depend only on (seed, class, anchor index ``first + i``), never on the
    batching. Returns the values and the number of generator evaluations (one per decoded latent).
    """
    n, latent_dim = anchors.shape
    neighbors, batch_size = estimator.neighbors, estimator.batch_size
    device = anchors.device
    values = torch.zeros(n, dtype=torch.float32, device=device)
    per_chunk = max(1, batch_size // neighbors)
    evaluations = 0
    with torch.no_grad(), task(f"sampling class {label}", n) as progress:
        for start in range(0, n, per_chunk):
            idx = torch.arange(start, min(n, start + per_chunk), device=device)
            base = decode_flat(gen, anchors[idx], label)
            offsets = torch.cat([estimator.offsets(seed, label, first + int(i), latent_dim, radius)
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
