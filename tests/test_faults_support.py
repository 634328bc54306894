"""Helpers shared by the fault tests (tests/test_faults_*.py): a tiny run config, the CLI with its stderr, and a
snapshot of a directory tree. No tests here."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from intrinsic_robustness.cli import main

TINY_TOML = """\
[run]
name = "tiny"

[generator]
source = "load"
spec = "affine"

[lipschitz]
methods = ["gradient"]
anchors_per_class = 2

[dataset]
n_train = 30
n_test = 6
batch_size = 30

[[classifiers]]
name = "std"
arch = "linear"
epochs = 1
batch_size = 10

[evaluation]
eps = [0.1]
n = 3
batch_size = 3
attacks = {unconstrained = ["pgd"]}
"""


def write_config(root: Path, text: str = TINY_TOML, name: str = "tiny.toml") -> Path:
    path = root / name
    path.write_text(text)
    return path


def cli(capsys, *args: str | Path) -> tuple[int, str, str]:
    """``irob ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def one_error(code: int, err: str, *needles: str) -> str:
    """Assert exit 2 with exactly one ``error:`` line containing every needle, and no traceback."""
    assert code == 2, f"exit {code}: {err}"
    lines = error_lines(err)
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``root`` with (is dir, size, mtime): equal snapshots mean nothing was written (a lock
    file's holder line is rewritten by each taker: only its presence counts)."""
    return {str(p.relative_to(root)): (p.is_dir(), 0, 0) if p.name == ".lock" or p.is_dir() else
            (False, p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


class SlowLinear(torch.nn.Module):
    """A linear classifier that sleeps per forward (``IROB_TEST_SLOW_TRAIN`` / ``IROB_TEST_SLOW_EVAL`` seconds), so
    a subprocess can be interrupted at a known stage."""

    def __init__(self, num_classes: int, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        pixels = 1
        for s in image_shape:
            pixels *= int(s)
        self.linear = torch.nn.Linear(pixels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = "IROB_TEST_SLOW_TRAIN" if self.training else "IROB_TEST_SLOW_EVAL"
        time.sleep(float(os.environ.get(key, "0")))
        return self.linear(x.flatten(1))


def slow_linear(num_classes: int, image_shape: tuple[int, ...]) -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SlowLinear(num_classes, image_shape)


class Misbehaving(torch.nn.Module):
    """A 3-class linear classifier on 1x6x6 images that misbehaves as ``mode`` says: ``nan`` (NaN logits where the
    image is bright on average), ``allnan``, ``extra`` (4 logits), ``batchdep`` (4 logits for batches > 1) or
    ``noisy`` (random noise on every call)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.linear = torch.nn.Linear(36, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        if self.mode == "extra" or (self.mode == "batchdep" and len(x) > 1):
            return out
        out = out[:, :3]
        if self.mode == "allnan":
            return out * float("nan")
        if self.mode == "nan":
            return torch.where(x.flatten(1).mean(1, keepdim=True) > 0.5, float("nan"), out)
        if self.mode == "noisy":
            return out + torch.randn_like(out)
        return out


class BadGenerator(torch.nn.Module):
    """The seeded affine reference, broken as ``mode`` says: ``nan`` (NaN images where z[0] > 1.5), ``range``
    (pixels of 1.5 where z[1] > 1.8), ``batchnorm`` (each batch centred on its own mean)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        from intrinsic_robustness.generators import make_affine

        self.mode, self.inner = mode, make_affine()
        self.latent_dim, self.num_classes = self.inner.latent_dim, self.inner.num_classes
        self.image_shape = tuple(self.inner.image_shape)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = self.inner.decode(z, y)
        if self.mode == "nan":
            return torch.where((z[:, 0] > 1.5).reshape(-1, 1, 1, 1), float("nan"), x)
        if self.mode == "range":
            return torch.where((z[:, 1] > 1.8).reshape(-1, 1, 1, 1), 1.5, x)
        if self.mode == "batchnorm":
            return (x - x.mean(0, keepdim=True) + 0.5).clamp(0, 1)
        return x

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)


def nan_generator() -> BadGenerator:
    return BadGenerator("nan")


def range_generator() -> BadGenerator:
    return BadGenerator("range")


def batchnorm_generator() -> BadGenerator:
    return BadGenerator("batchnorm")
