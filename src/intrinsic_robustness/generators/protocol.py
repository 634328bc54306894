"""The conditional-generator contract, written once: what every part of the toolkit may call, and a checker
that tests exactly that.

A generator is an object (usually an ``nn.Module``) with

- ``latent_dim: int``, ``num_classes: int``, ``image_shape: (channels, height, width)``;
- ``decode(z, y)``: images in [0, 1] of shape ``(n, *image_shape)`` for latents ``z`` ``(n, latent_dim)`` and
  int64 labels ``y`` ``(n,)``; deterministic in eval mode and differentiable in ``z`` (output scaling and
  resizing happen inside, so Lipschitz constants, data and attacks share one pixel space);
- ``sample_latent(n, generator=None)``: ``(n, latent_dim)`` latents z ~ N(0, I) drawn from the given
  ``torch.Generator`` (on that generator's device).

The library calls nothing else (no ``device=`` keyword): :func:`draw_latents` draws on the seed's device and
moves the result.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.runtime import make_generator, module_device

CONTRACT = ("latent_dim, num_classes, image_shape=(C, H, W), decode(z, y) -> images in [0, 1] "
            "and sample_latent(n, generator=None)")
ATTRIBUTES = ("latent_dim", "num_classes", "image_shape", "decode", "sample_latent")


@runtime_checkable
class ConditionalGenerator(Protocol):
    """x = decode(z, y) with z ~ N(0, I_latent_dim), y in {0..num_classes-1}, x in [0,1]^image_shape."""

    latent_dim: int
    num_classes: int
    image_shape: tuple[int, ...]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor: ...


def standard_normal_latent(
    n: int, latent_dim: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """z ~ N(0, I) drawn from an explicit generator (its device wins when ``device`` is not given)."""
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return torch.randn(n, latent_dim, generator=generator, device=device)


def draw_latents(gen: object, n: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """``gen.sample_latent(n, generator=generator)`` (the contract's call), checked and moved to ``device``."""
    z = gen.sample_latent(int(n), generator=generator)  # type: ignore[attr-defined]
    if not isinstance(z, torch.Tensor) or tuple(z.shape) != (int(n), int(gen.latent_dim)):  # type: ignore[attr-defined]
        shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise UserInputError(f"generator: sample_latent({n}) returned {shape}, expected ({n}, "
                             f"{gen.latent_dim}); the contract is {CONTRACT}")  # type: ignore[attr-defined]
    return z if device is None else z.to(device)


def check_generator(gen: object, n: int = 4, atol: float = 1e-5, name: str = "generator") -> None:
    """Verify the contract (attributes, shapes, [0,1] range, determinism, gradient flow in z).

    Raises :class:`UserInputError` with one line that names what is wrong and how to fix it.
    """
    for attr in ATTRIBUTES:
        if not hasattr(gen, attr):
            raise UserInputError(f"{name}: missing '{attr}'; a generator needs {CONTRACT}")
    try:
        latent_dim, num_classes = int(gen.latent_dim), int(gen.num_classes)  # type: ignore[attr-defined]
        shape = tuple(int(s) for s in gen.image_shape)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise UserInputError(f"{name}: latent_dim, num_classes and image_shape must be integers; "
                             f"a generator needs {CONTRACT}") from None
    if latent_dim < 1 or num_classes < 1 or len(shape) != 3 or min(shape) < 1:
        raise UserInputError(f"{name}: latent_dim={latent_dim}, num_classes={num_classes}, image_shape={shape}; "
                             "need positive sizes and image_shape=(channels, height, width)")
    with evaluating(gen):
        _check_outputs(gen, n, atol, name, latent_dim, num_classes, shape)


def _check_outputs(gen: object, n: int, atol: float, name: str, latent_dim: int, num_classes: int,
                   shape: tuple[int, ...]) -> None:
    """Shapes, range, gradient flow and determinism of decode on a few seeded latents."""
    device = module_device(gen)
    try:
        z = draw_latents(gen, n, make_generator(0), device)
    except TypeError as exc:
        raise UserInputError(f"{name}: sample_latent(n, generator=...) failed ({exc}); the contract is "
                             f"{CONTRACT}") from None
    y = torch.arange(n, device=device) % num_classes
    z = z.detach().clone().requires_grad_(True)
    x = gen.decode(z, y)  # type: ignore[attr-defined]
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise UserInputError(f"{name}: decode returned shape {got}, expected {(n, *shape)}; resize inside decode")
    if not torch.isfinite(x).all() or x.min() < -1e-6 or x.max() > 1 + 1e-6:
        raise UserInputError(f"{name}: decode output spans [{x.min().item():.3g}, {x.max().item():.3g}], "
                             "expected [0, 1]; map tanh output with (x + 1) / 2 inside decode")
    if not x.requires_grad:
        raise UserInputError(f"{name}: decode output does not depend differentiably on z; "
                             "do not detach or run decode under no_grad")
    (grad,) = torch.autograd.grad(x.sum(), z, allow_unused=True)
    if grad is None or not torch.isfinite(grad).all():
        raise UserInputError(f"{name}: no finite gradient flows from decode(z, y) back to z")
    with torch.no_grad():
        again = gen.decode(z.detach(), y)  # type: ignore[attr-defined]
    if (again - x.detach()).abs().max() > atol:
        raise UserInputError(f"{name}: decode is not deterministic in eval mode (max change "
                             f"{(again - x.detach()).abs().max().item():.3g}); disable dropout/noise in eval()")
    with torch.no_grad():
        alone = gen.decode(z.detach()[:1], y[:1])  # type: ignore[attr-defined]
    if isinstance(alone, torch.Tensor) and alone.shape == x[:1].shape and (alone - x.detach()[:1]).abs().max() > atol:
        raise UserInputError(f"{name}: decode of one latent differs from the same latent in a batch of {n} (max "
                             f"change {(alone - x.detach()[:1]).abs().max().item():.3g}); its output must not depend "
                             "on the batch (batch statistics in eval mode?)")
