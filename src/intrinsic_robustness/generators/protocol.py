"""The conditional-generator contract every part of the toolkit relies on, and a checker for it.

A generator is an ``nn.Module`` with ``latent_dim``, ``num_classes``, ``image_shape`` and
``decode(z, y)`` returning images in [0, 1] (output scaling and resizing happen inside ``decode``, so
Lipschitz constants, data and attacks share one pixel space), plus ``sample_latent(n, generator=...)``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from intrinsic_robustness.errors import UserInputError


@runtime_checkable
class ConditionalGenerator(Protocol):
    """x = decode(z, y) with z ~ N(0, I_latent_dim), y in {0..num_classes-1}, x in [0,1]^image_shape."""

    latent_dim: int
    num_classes: int
    image_shape: tuple[int, ...]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor: ...

    def sample_latent(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor: ...


def standard_normal_latent(
    n: int, latent_dim: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """z ~ N(0, I) drawn from an explicit generator (its device wins when ``device`` is not given)."""
    if device is None:
        device = generator.device if generator is not None else "cpu"
    return torch.randn(n, latent_dim, generator=generator, device=device)


def generator_device(gen: torch.nn.Module) -> torch.device:
    """Device of a generator's first parameter or buffer (CPU for a parameterless module)."""
    for t in list(gen.parameters()) + list(gen.buffers()):
        return t.device
    return torch.device("cpu")


def check_generator(gen: object, n: int = 4, atol: float = 1e-5, name: str = "generator") -> None:
    """Verify the contract (attributes, shapes, [0,1] range, determinism, gradient flow in z).

    Raises :class:`UserInputError` with one line that names what is wrong and how to fix it.
    """
    for attr in ("latent_dim", "num_classes", "image_shape", "decode", "sample_latent"):
        if not hasattr(gen, attr):
            raise UserInputError(f"{name}: missing '{attr}'; a generator needs latent_dim, num_classes, "
                                 "image_shape, decode(z, y) and sample_latent(n, generator=...)")
    latent_dim, num_classes = int(gen.latent_dim), int(gen.num_classes)  # type: ignore[attr-defined]
    shape = tuple(int(s) for s in gen.image_shape)  # type: ignore[attr-defined]
    if latent_dim < 1 or num_classes < 1 or len(shape) != 3:
        raise UserInputError(f"{name}: latent_dim={latent_dim}, num_classes={num_classes}, image_shape={shape}; "
                             "need positive sizes and image_shape=(channels, height, width)")
    was_training = bool(getattr(gen, "training", False))
    if isinstance(gen, torch.nn.Module):
        gen.eval()
    try:
        _check_outputs(gen, n, atol, name, latent_dim, num_classes, shape)
    finally:
        if isinstance(gen, torch.nn.Module):
            gen.train(was_training)


def _check_outputs(gen: object, n: int, atol: float, name: str, latent_dim: int, num_classes: int,
                   shape: tuple[int, ...]) -> None:
    """Shapes, range, gradient flow and determinism of decode on a few seeded latents."""
    device = generator_device(gen) if isinstance(gen, torch.nn.Module) else torch.device("cpu")
    rng = torch.Generator(device=device).manual_seed(0)
    z = gen.sample_latent(n, generator=rng, device=device)  # type: ignore[attr-defined]
    if tuple(z.shape) != (n, latent_dim):
        raise UserInputError(f"{name}: sample_latent({n}) has shape {tuple(z.shape)}, expected ({n}, {latent_dim})")
    y = torch.arange(n, device=device) % num_classes
    z = z.detach().clone().requires_grad_(True)
    x = gen.decode(z, y)  # type: ignore[attr-defined]
    if tuple(x.shape) != (n, *shape):
        raise UserInputError(f"{name}: decode returned shape {tuple(x.shape)}, expected {(n, *shape)}; "
                             "resize inside decode")
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
