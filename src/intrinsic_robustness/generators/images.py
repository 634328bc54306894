"""Sample grids of a conditional generator: one row per class, written atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from intrinsic_robustness.modes import evaluating
from intrinsic_robustness.runtime import derive_seed, make_generator, module_device
from intrinsic_robustness.storage import atomic_path


def grid_array(images: torch.Tensor, pad: int = 2) -> torch.Tensor:
    """Tile ``[rows, cols, C, H, W]`` images in [0, 1] into one uint8 ``[H', W', C]`` array (padding white)."""
    rows, cols, c, h, w = images.shape
    canvas = torch.ones(c, rows * (h + pad) + pad, cols * (w + pad) + pad)
    for r in range(rows):
        for k in range(cols):
            top, left = pad + r * (h + pad), pad + k * (w + pad)
            canvas[:, top:top + h, left:left + w] = images[r, k]
    return (canvas.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], scale: int = 2) -> Path:
    """Write a ``[rows, cols, C, H, W]`` grid as PNG (nearest-neighbour upscaled by ``scale``)."""
    from PIL import Image

    array = grid_array(images).numpy()
    mode = "L" if array.shape[2] == 1 else "RGB"
    img = Image.fromarray(array[:, :, 0] if mode == "L" else array, mode=mode)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


@torch.no_grad()
def class_grid(gen: Any, per_class: int = 10, seed: int = 0) -> torch.Tensor:
    """``[num_classes, per_class, C, H, W]`` samples with fixed latents (the same z in every row)."""
    device = module_device(gen)
    with evaluating(gen):
        rng = make_generator(derive_seed(seed, "sample-grid"))
        z = torch.randn(per_class, int(gen.latent_dim), generator=rng).to(device)
        rows = [gen.decode(z, torch.full((per_class,), k, device=device, dtype=torch.long)).cpu()
                for k in range(int(gen.num_classes))]
    return torch.stack(rows)


def save_class_grid(gen: Any, path: str | os.PathLike[str], per_class: int = 10, seed: int = 0) -> Path:
    """Sample a class-by-row grid from ``gen`` and write it to ``path``."""
    return save_grid(class_grid(gen, per_class, seed), path)
