"""L2 threat models and their geometry, separate from optimisation: the threat names, eps grids and keys,
when a norm counts as within eps, norms, projection, normalised steps and uniform starts.

Shared by the attacks (evaluation), adversarial training, the report and the CLI. Tensor functions act per
example (the first dimension is the batch) and accept ``eps`` as a float or a per-example tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch

# unconstrained: any x' in [0,1]^n within eps; in-distribution: some decode(z', y) within eps of x.
THREATS = ("unconstrained", "in-distribution")
# The eps grid evaluations use when none is given (L2 on the [0,1] pixel scale).
DEFAULT_EPS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# A success counts at eps when its norm is at most eps + NORM_TOL (float32 round-off of projections).
NORM_TOL = 1e-5


def eps_key(eps: float) -> str:
    """The JSON key of an eps value: shortest text that reads back exactly (``1``, ``0.5``, ``0.25``)."""
    value = float(eps)
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def survives(norms: Any, eps: Any) -> Any:
    """Per example, whether it is robust at eps: its minimal adversarial norm exceeds eps (+ NORM_TOL).

    The one rule every robust accuracy uses (tensors or arrays, broadcasting); a NaN norm never survives.
    """
    return norms > eps + NORM_TOL


def misclassified(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per example, whether the classifier gets it wrong: argmax != y, or any logit NaN or inf (argmax of NaN
    would pick a class, and count a broken classifier right, and robust, on that class)."""
    return (logits.argmax(dim=1) != y) | ~torch.isfinite(logits).all(dim=1)


def robust_accuracy(norms: torch.Tensor, eps: Iterable[float]) -> dict[str, float]:
    """Fraction of examples whose minimal adversarial norm exceeds each eps (+ NORM_TOL), keyed by eps_key."""
    return {eps_key(e): float(survives(norms, float(e)).double().mean()) for e in eps}


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
                 generator: torch.Generator | Sequence[torch.Generator] | None = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Points uniform in the L2 ball of radius ``eps`` in dimension prod(shape[1:]), one per example.

    Direction is a normalised Gaussian, radius is eps * U^(1/d): uniform in volume, not just on the sphere.
    ``generator`` is one generator for the whole batch, or one per example (``shape[0]`` of them), in which
    case example i's point depends only on its own generator (attacks use this for batch independence).
    """
    dtype = dtype or torch.float32
    per_example = generator is not None and not isinstance(generator, torch.Generator)
    if device is None:
        first = (generator[0] if per_example and len(generator) else generator) if generator is not None else None
        device = first.device if first is not None else "cpu"
    d = math.prod(shape[1:]) if len(shape) > 1 else 1
    if per_example:
        if len(generator) != shape[0]:
            raise ValueError(f"uniform_ball: {len(generator)} generators for {shape[0]} examples")
        if not len(generator):
            return torch.zeros(*shape, device=device, dtype=dtype)
        g = torch.stack([torch.randn(*shape[1:], generator=r, device=device, dtype=dtype) for r in generator])
        u = torch.stack([torch.rand((), generator=r, device=device, dtype=dtype) for r in generator])
        radius = torch.as_tensor(eps, dtype=dtype, device=device).expand(shape[0]) * u.pow(1.0 / d)
        return g * _per_example(radius / l2_norm(g).clamp_min(1e-12), g)
    g = torch.randn(*shape, generator=generator, device=device, dtype=dtype)
    u = torch.rand(shape[0], generator=generator, device=device, dtype=dtype)
    radius = _per_example(eps, g) * _per_example(u.pow(1.0 / d), g)
    return normalized_step(g) * radius


def clip_box(x: torch.Tensor, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    """Clip images to the valid pixel box."""
    return x.clamp(low, high)
