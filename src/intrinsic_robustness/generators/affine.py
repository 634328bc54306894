"""The affine reference generator clamp(A z + b_y, 0, 1): a generator whose Lipschitz constant is known.

Its global Lipschitz constant is at most ||A||_2 (clamping is 1-Lipschitz), with equality wherever no
pixel is clamped, which makes it the oracle for estimator, attack and bound tests.
"""

from __future__ import annotations

import torch
from torch import nn

from intrinsic_robustness.generators.protocol import standard_normal_latent
from intrinsic_robustness.runtime import make_generator


class AffineGenerator(nn.Module):
    """x = clamp(A z + b_y, 0, 1) reshaped to ``image_shape``."""

    def __init__(self, weight: torch.Tensor, offsets: torch.Tensor, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        n_pixels = int(torch.tensor(image_shape).prod())
        if weight.ndim != 2 or weight.shape[0] != n_pixels:
            raise ValueError(f"weight must have shape ({n_pixels}, latent_dim), got {tuple(weight.shape)}")
        if offsets.ndim != 2 or offsets.shape[1] != n_pixels:
            raise ValueError(f"offsets must have shape (num_classes, {n_pixels}), got {tuple(offsets.shape)}")
        self.register_buffer("weight", weight.detach().clone().float())
        self.register_buffer("offsets", offsets.detach().clone().float())
        self.latent_dim = int(weight.shape[1])
        self.num_classes = int(offsets.shape[0])
        self.image_shape = tuple(int(s) for s in image_shape)

    @classmethod
    def random(
        cls, latent_dim: int = 8, num_classes: int = 3, image_shape: tuple[int, int, int] = (1, 6, 6),
        scale: float = 0.05, seed: int = 0,
    ) -> AffineGenerator:
        """A seeded instance with offsets near 0.5 and small A, so outputs are rarely clamped."""
        rng = make_generator(seed)
        n_pixels = int(torch.tensor(image_shape).prod())
        weight = torch.randn(n_pixels, latent_dim, generator=rng) * scale
        offsets = 0.3 + 0.4 * torch.rand(num_classes, n_pixels, generator=rng)
        return cls(weight, offsets, image_shape)

    @property
    def spectral_norm(self) -> float:
        """||A||_2, the Lipschitz constant of the unclamped map."""
        return float(torch.linalg.matrix_norm(self.weight, ord=2))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        flat = z @ self.weight.T + self.offsets[y]
        return flat.clamp(0.0, 1.0).reshape(z.shape[0], *self.image_shape)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(z, y)

    def sample_latent(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        if device is None and generator is None:  # the contract: draw on the seed's device when one is given
            device = self.weight.device
        return standard_normal_latent(n, self.latent_dim, generator, device)


def make_affine(latent_dim: int = 8, num_classes: int = 3, height: int = 6, width: int = 6, channels: int = 1,
                scale: float = 0.05, seed: int = 0) -> AffineGenerator:
    """Factory usable as ``intrinsic_robustness.generators.affine:make_affine`` on the command line."""
    return AffineGenerator.random(latent_dim, num_classes, (channels, height, width), scale, seed)
