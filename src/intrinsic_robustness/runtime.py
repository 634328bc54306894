"""Devices and seeds: the only place that turns ``--device`` and ``--seed`` into torch objects."""

from __future__ import annotations

import hashlib

import torch

from intrinsic_robustness.errors import UserInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; asking for CUDA without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserInputError(f"--device {device!r} is not one of cpu, cuda, auto")


def derive_seed(base_seed: int, *names: str | int) -> int:
    """A stable 63-bit seed for a named stage, derived from one base seed (no wall clock)."""
    text = ":".join([str(int(base_seed)), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch.Generator: the only source of randomness library code uses."""
    gen = torch.Generator(device=torch.device(device) if not isinstance(device, torch.device) else device)
    gen.manual_seed(int(seed))
    return gen
