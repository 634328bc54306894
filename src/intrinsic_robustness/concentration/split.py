"""The sample a concentration estimate uses: points as flat rows, and the seeded fit/held-out split."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.runtime import make_generator


def as_points(images: torch.Tensor, name: str = "data") -> torch.Tensor:
    """Images (or any ``[N, ...]`` tensor) as float32 rows ``[N, D]``; non-finite values are refused."""
    if images.ndim < 1 or len(images) == 0:
        raise UserInputError(f"{name}: the sample is empty; give a dataset with images in it")
    points = images.reshape(len(images), -1).float()
    if points.shape[1] == 0 or not torch.isfinite(points).all():
        raise UserInputError(f"{name}: the images contain non-finite values (or no pixels); fix the data")
    return points


def load_sample(spec: str | os.PathLike[str], size: int | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Every image of a real dataset (``digits``, ``mnist``, ``fashion-mnist``, ``idx:DIR``: train then test
    split) or of a generated dataset directory (train then test split), as rows ``[N, D]`` on the [0, 1] scale."""
    from intrinsic_robustness.data.real import is_real_name, load_real_native
    from intrinsic_robustness.data.synthetic import load_dataset, read_manifest

    text = str(spec)
    parts: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    if (Path(text) / "manifest.json").is_file():
        if size is not None:
            raise UserInputError(f"--image-size {size}: a generated dataset keeps its generator's size")
        splits = [s for s in ("train", "test") if s in read_manifest(text)["splits"]]
        for split in splits:
            data = load_dataset(text, split)
            parts.append(data.images)
            labels.append(data.labels)
        kind = "generated"
    elif is_real_name(text):
        for split in ("train", "test"):
            images, y = load_real_native(text, split, size)
            parts.append(images)
            labels.append(y)
        kind = "real"
    else:
        raise UserInputError(f"--data {text}: neither real images (digits, mnist, fashion-mnist, idx:DIR) nor a "
                             "dataset directory written by 'irob generate' (no manifest.json there)")
    images = torch.cat(parts) if parts else torch.zeros(0)
    y = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
    check_sample(images, y, text)
    info = {"data": text, "kind": kind, "n": len(images), "image_shape": list(images.shape[1:]),
            "order": "train split then test split, in file order"}
    return as_points(images, f"--data {text}"), info


def check_sample(images: torch.Tensor, labels: torch.Tensor | None, name: str) -> None:
    """Refuse an empty sample or a single-class one (a labelled dataset with one class is not the task's data)."""
    if len(images) < 4:
        raise UserInputError(f"--data {name}: {len(images)} images; need at least 4 (two per half)")
    if labels is not None and len(labels) and int(labels.unique().numel()) < 2:
        raise UserInputError(f"--data {name}: every image has the same label; concentration is measured on a "
                             "dataset with at least two classes")


def split_indices(n: int, seed: int, fit_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of ``range(n)`` into a fitting half and a held-out half (sorted indices)."""
    if not 0 < fit_fraction < 1:
        raise UserInputError(f"fit fraction {fit_fraction}: must lie in (0, 1)")
    n_fit = int(math.floor(n * fit_fraction))
    if n_fit < 2 or n - n_fit < 2:
        raise UserInputError(f"sample of {n} points: too small to split into two halves of at least 2")
    order = torch.randperm(n, generator=make_generator(int(seed)))
    return order[:n_fit].sort().values, order[n_fit:].sort().values


def target_count(alpha: float, n: int) -> int:
    """The fewest fitting points a region must hold to have empirical measure >= alpha: ceil(alpha n)."""
    return max(1, min(n, int(math.ceil(alpha * n - 1e-9))))
