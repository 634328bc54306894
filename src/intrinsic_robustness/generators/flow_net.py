"""The velocity network of the ``flow`` family: a small class- and time-conditional U-Net, written by hand.

v(x, t, y): residual blocks (group norm, SiLU, 3x3 convolutions) whose features are scaled and shifted by an
embedding of the time t (sinusoidal features + MLP) plus a learned class embedding; ``levels`` stride-2
downsamplings and nearest-neighbour upsamplings with skip connections. Class index ``num_classes`` is the
"no class" token used for classifier-free guidance. Every operation is row-wise, so a batch of any size
gives each example the same result, and everything is smooth except the final clamp in ``decode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _groups(channels: int) -> int:
    """Group-norm groups: the largest of 8, 4, 2, 1 that divides ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class GroupNorm(nn.Module):
    """Group normalisation written with plain tensor ops (torch's fused kernel is ~100x slower under forward-mode
    AD, which the gradient Lipschitz estimator uses); parameters as in ``nn.GroupNorm``."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.groups, self.eps = int(groups), float(eps)
        self.weight, self.bias = nn.Parameter(torch.ones(channels)), nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.reshape(x.shape[0], self.groups, -1)
        g = (g - g.mean(dim=2, keepdim=True)) * torch.rsqrt(g.var(dim=2, unbiased=False, keepdim=True) + self.eps)
        return g.reshape(x.shape) * self.weight[:, None, None] + self.bias[:, None, None]


class ResBlock(nn.Module):
    """norm-SiLU-conv, FiLM by the embedding, norm-SiLU-conv, plus a (1x1-projected) skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = GroupNorm(_groups(c_in), c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = GroupNorm(_groups(c_out), c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class FlowNet(nn.Module):
    """Class-conditional velocity field v(x, t, y) on images of ``image_shape`` (H, W divisible by 2^levels)."""

    def __init__(self, num_classes: int, image_shape: Sequence[int], width: int = 12, levels: int = 2,
                 emb_dim: int = 32) -> None:
        super().__init__()
        c, h, w = (int(s) for s in image_shape)
        if width < 1 or levels < 0 or emb_dim < 2 or emb_dim % 2:
            raise ValueError(f"flow network: width={width}, levels={levels}, emb_dim={emb_dim}; need width >= 1, "
                             "levels >= 0 and an even emb_dim >= 2")
        if h % (2 ** levels) or w % (2 ** levels):
            raise ValueError(f"image {h}x{w}: height and width must be divisible by 2^levels = {2 ** levels}; "
                             "choose fewer levels")
        self.num_classes, self.emb_dim = int(num_classes), int(emb_dim)
        chans = [width * (i + 1) for i in range(levels + 1)]
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_emb = nn.Embedding(self.num_classes + 1, emb_dim)
        self.conv_in = nn.Conv2d(c, chans[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(chans[i], chans[i], emb_dim) for i in range(levels))
        self.pool = nn.ModuleList(nn.Conv2d(chans[i], chans[i + 1], 3, 2, 1) for i in range(levels))
        self.mid = ResBlock(chans[-1], chans[-1], emb_dim)
        self.up = nn.ModuleList(ResBlock(chans[i + 1] + chans[i], chans[i], emb_dim) for i in range(levels))
        self.unpool = nn.ModuleList(nn.Conv2d(chans[i + 1], chans[i + 1], 3, padding=1) for i in range(levels))
        self.norm_out = GroupNorm(_groups(chans[0]), chans[0])
        self.conv_out = nn.Conv2d(chans[0], c, 3, padding=1)

    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal features of t in [0, 1] at frequencies from 1 to 1000."""
        half = self.emb_dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(1000.0), half, device=t.device, dtype=t.dtype))
        phase = t[:, None] * freqs[None, :]
        return torch.cat([phase.sin(), phase.cos()], dim=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(self.time_features(t)) + self.label_emb(y)
        h = self.conv_in(x)
        skips = []
        for block, pool in zip(self.down, self.pool, strict=True):
            h = block(h, emb)
            skips.append(h)
            h = pool(h)
        h = self.mid(h, emb)
        for i in reversed(range(len(self.up))):
            h = self.unpool[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = self.up[i](torch.cat([h, skips[i]], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))
