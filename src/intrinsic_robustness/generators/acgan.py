"""ACGAN (Odena et al. 2017) in the configuration the paper trained on MNIST: a conditional generator and a
discriminator with an auxiliary classifier.

Generator: [z, one_hot(y)] -> FC 1024 -> FC 128*(H/4)*(W/4) -> deconv 64 -> deconv C -> tanh, with batch
norm and ReLU between layers. ``decode`` maps the tanh output to [0, 1] so that Lipschitz constants,
datasets and attacks all live on the [0, 1] pixel scale (the paper's own code measured MNIST on the
[-1, 1] scale, a factor 2 off). The discriminator sees [0, 1] images and rescales them itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.generators.protocol import standard_normal_latent

ARCHITECTURE = "acgan"


def _check_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or shape[0] < 1 or shape[1] % 4 or shape[2] % 4 or min(shape[1:]) < 4:
        raise ValueError(f"image_shape {shape}: ACGAN needs (channels, height, width) with height and width "
                         "positive multiples of 4, e.g. (1, 28, 28) or (3, 32, 32)")
    return shape  # type: ignore[return-value]


class ACGANGenerator(nn.Module):
    """Class-conditional generator G(z, y); ``decode`` returns images in [0, 1]."""

    def __init__(self, latent_dim: int = 100, num_classes: int = 10,
                 image_shape: Sequence[int] = (1, 28, 28), width: int = 64, hidden: int = 1024) -> None:
        super().__init__()
        self.latent_dim, self.num_classes = int(latent_dim), int(num_classes)
        self.image_shape = _check_shape(image_shape)
        self.width, self.hidden = int(width), int(hidden)
        c, h, w = self.image_shape
        self._base = (2 * self.width, h // 4, w // 4)
        n_base = self._base[0] * self._base[1] * self._base[2]
        self.fc = nn.Sequential(
            nn.Linear(self.latent_dim + self.num_classes, self.hidden), nn.BatchNorm1d(self.hidden), nn.ReLU(),
            nn.Linear(self.hidden, n_base), nn.BatchNorm1d(n_base), nn.ReLU(),
        )
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * self.width, self.width, 4, 2, 1), nn.BatchNorm2d(self.width), nn.ReLU(),
            nn.ConvTranspose2d(self.width, c, 4, 2, 1), nn.Tanh(),
        )
        init_gan_weights(self)

    def config(self) -> dict[str, Any]:
        """Constructor arguments (saved next to the weights so the model can be rebuilt)."""
        return {"architecture": ARCHITECTURE, "latent_dim": self.latent_dim, "num_classes": self.num_classes,
                "image_shape": list(self.image_shape), "width": self.width, "hidden": self.hidden}

    def raw(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The network's tanh output in [-1, 1] (the scale the GAN is trained on)."""
        onehot = F.one_hot(y.long(), self.num_classes).to(z.dtype)
        h = self.fc(torch.cat([z, onehot], dim=1)).view(z.shape[0], *self._base)
        return self.deconv(h)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1]: (tanh + 1) / 2."""
        return (self.raw(z, y) + 1.0) / 2.0

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(z, y)

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        if device is None and generator is None:
            device = self.fc[0].weight.device
        return standard_normal_latent(n, self.latent_dim, generator, device)


class ACGANDiscriminator(nn.Module):
    """Discriminator with an auxiliary classifier: returns (real/fake logit [N], class logits [N, K])."""

    def __init__(self, num_classes: int = 10, image_shape: Sequence[int] = (1, 28, 28), width: int = 64,
                 hidden: int = 1024) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.image_shape = _check_shape(image_shape)
        c, h, w = self.image_shape
        n_feat = 2 * width * (h // 4) * (w // 4)
        self.conv = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
        )
        self.fc = nn.Sequential(nn.Linear(n_feat, hidden), nn.BatchNorm1d(hidden), nn.LeakyReLU(0.2))
        self.adv = nn.Linear(hidden, 1)
        self.cls = nn.Linear(hidden, self.num_classes)
        init_gan_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.conv(2.0 * x - 1.0).flatten(1))
        return self.adv(h).squeeze(1), self.cls(h)


def init_gan_weights(module: nn.Module, std: float = 0.02) -> None:
    """DCGAN-style initialisation: N(0, 0.02) weights, zero biases, batch-norm scales near 1."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


def build_acgan(config: dict[str, Any]) -> ACGANGenerator:
    """Rebuild an :class:`ACGANGenerator` from :meth:`ACGANGenerator.config` output."""
    keys = ("latent_dim", "num_classes", "image_shape", "width", "hidden")
    return ACGANGenerator(**{k: config[k] for k in keys if k in config})
