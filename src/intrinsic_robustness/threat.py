"""L2 threat geometry, separate from optimisation: norms, projection, normalised steps, uniform starts.

Shared by the attacks (evaluation) and by adversarial training. All functions act per example (the first
dimension is the batch) and accept ``eps`` as a float or a per-example tensor.
"""

from __future__ import annotations

import torch


def _per_example(value: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or (batch,) tensor to shape (batch, 1, 1, ...) matching ``like``."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def l2_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-example L2 norm over all non-batch dimensions."""
    return t.flatten(1).norm(p=2, dim=1)


def project_l2(delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
    """Project each example of ``delta`` onto the L2 ball of radius ``eps`` (idempotent)."""
    norms = _per_example(l2_norm(delta), delta)
    radius = _per_example(eps, delta)
    factor = torch.where(norms > radius, radius / norms.clamp_min(1e-30), torch.ones_like(norms))
    return delta * factor


def normalized_step(grad: torch.Tensor) -> torch.Tensor:
    """Each example's gradient scaled to unit L2 norm (zero gradients stay zero)."""
    norms = _per_example(l2_norm(grad), grad)
    return grad / norms.clamp_min(1e-12)


def uniform_ball(shape: tuple[int, ...] | torch.Size, eps: float | torch.Tensor,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Points uniform in the L2 ball of radius ``eps`` in dimension prod(shape[1:]), one per example.

    Direction is a normalised Gaussian, radius is eps * U^(1/d): uniform in volume, not just on the sphere.
    """
    device = device if device is not None else (generator.device if generator is not None else "cpu")
    g = torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    d = int(torch.tensor(shape[1:]).prod()) if len(shape) > 1 else 1
    u = torch.rand(shape[0], generator=generator, device=device, dtype=dtype)
    radius = _per_example(eps, g) * _per_example(u.pow(1.0 / d), g)
    return normalized_step(g) * radius


def clip_box(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Clip images to the valid pixel box."""
    return x.clamp(low, high)
