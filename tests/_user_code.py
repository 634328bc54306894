"""User code the tests name as ``_user_code:NAME`` (this directory is on sys.path under pytest; subprocesses get it
through PYTHONPATH): a generator written exactly to the documented contract, factories that raise, and payloads
that leave a marker file, standing in for what a hostile file could name (``os:system``)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

MARKER_ENV = "IROB_TEST_MARKER"


class ContractGenerator(nn.Module):
    """Exactly the documented contract and nothing more: ``sample_latent(n, generator=None)``, no ``device``."""

    def __init__(self, latent_dim: int = 4, num_classes: int = 3, size: int = 4) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.image_shape = latent_dim, num_classes, (1, size, size)
        self.linear = nn.Linear(latent_dim + num_classes, size * size)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = nn.functional.one_hot(y.long(), self.num_classes).to(z.dtype)
        return torch.sigmoid(self.linear(torch.cat([z, onehot], dim=1))).view(-1, *self.image_shape)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)


def contract_generator() -> ContractGenerator:
    """Seeded, so every load gives the same weights (the dataset's checksum matches on reload)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return ContractGenerator()


def raising_generator() -> nn.Module:
    raise RuntimeError("weights server unreachable")


def raising_classifier(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    raise RuntimeError("no such checkpoint")


def linear_classifier(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        pixels = 1
        for s in image_shape:
            pixels *= int(s)
        return nn.Sequential(nn.Flatten(), nn.Linear(pixels, num_classes))


def _mark(marker: str | None) -> None:
    path = marker or os.environ.get(MARKER_ENV)
    if path:
        Path(path).write_text("user code ran\n")


def payload_generator(marker: str | None = None, **kwargs: object) -> nn.Module:
    """What a hostile generator.json could name: leaves a marker, then returns a working generator."""
    _mark(marker)
    return contract_generator()


def payload_classifier(num_classes: int, image_shape: tuple[int, ...]) -> nn.Module:
    """What a hostile classifier config.json could name as its arch."""
    _mark(None)
    return linear_classifier(num_classes, image_shape)


def fixed_linear_classifier() -> nn.Module:
    """A classifier for 1x6x6 images that takes no arguments (so nothing tells it the data's size)."""
    return linear_classifier(3, (1, 6, 6))


class _BrokenDecode(ContractGenerator):
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise ValueError("decoder expects 128-d latents")


def broken_decode_generator() -> nn.Module:
    """Meets the contract on paper, but its decode raises."""
    return _BrokenDecode()
