"""BigGAN-128 as the paper used it: the TF-Hub BigGAN generator in the PyTorch layout of
``biggan128-release.pt`` (ivclab/BigGAN-Generator-Pretrained-Pytorch), restricted to ten ImageNet classes.

The paper's code loads that file into ``BigGAN128`` and generates with z ~ N(0, I_120), truncation 1.0
(batch-norm "standing" statistics of truncation 1.0, z not rescaled), maps tanh output with (x + 1) / 2 and
shrinks 128x128 to 32x32 with ``F.interpolate`` (nearest neighbour). :class:`BigGAN` reproduces exactly that
inside ``decode``. Module and buffer names match the released state dict, so it loads strictly
(spectral-norm ``weight_orig`` / ``weight_u`` / ``weight_v``, batch-norm standing statistics included).
Weights are never downloaded: pass ``--generator-weights FILE`` or put the file at
``$IROB_DATA/biggan/biggan128-release.pt`` (or ``./data/biggan/``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.protocol import standard_normal_latent

ARCHITECTURE = "biggan"
PAPER_CLASS_IDS = (404, 609, 11, 281, 351, 153, 30, 339, 724, 717)  # ImageNet ids -> labels 0..9
WEIGHTS_NAME = "biggan128-release.pt"
CHUNK = 20  # z (120) is split into 6 chunks of 20: one for the first layer, one per residual block
_MULTIPLIERS = (16, 16, 8, 4, 2, 1)  # channel widths (times ch) at resolutions 4, 8, 16, 32, 64, 128


def _normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / (||x|| + eps), the released code's normalisation (not max(||x||, eps))."""
    return x / (x.norm() + eps)


class _SpectralNorm(nn.Module):
    """Weight divided by sigma = u . (W v), W the output-major matrix (columns in TF's H, W, C order)."""

    def _init_sn(self, weight: torch.Tensor, eps: float) -> None:
        self.eps = eps
        self.weight_orig = nn.Parameter(weight)
        u = _normalize(torch.randn(weight.shape[0]), eps)
        v = _normalize(torch.randn(weight[0].numel()), eps)
        with torch.no_grad():  # converge u, v so sigma is the spectral norm of the fresh weight
            mat = self._matrix()
            for _ in range(20):
                v = _normalize(mat.t() @ u, eps)
                u = _normalize(mat @ v, eps)
        self.register_buffer("weight_u", u)
        self.register_buffer("weight_v", v)

    def _matrix(self) -> torch.Tensor:
        w = self.weight_orig
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1) if w.ndim == 4 else w

    def normalized_weight(self) -> torch.Tensor:
        mat = self._matrix()
        u, v = self.weight_u, self.weight_v
        if self.training:  # one power-iteration step, buffers updated in place as in training
            with torch.no_grad():
                v = _normalize(mat.t() @ u, self.eps)
                u = _normalize(mat @ v, self.eps)
                self.weight_u.copy_(u)
                self.weight_v.copy_(v)
        sigma = torch.dot(u, mat @ v)
        return self.weight_orig / sigma


class SNLinear(_SpectralNorm):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, eps: float = 1e-4) -> None:
        super().__init__()
        layer = nn.Linear(in_features, out_features, bias=bias)
        self._init_sn(layer.weight.detach().clone(), eps)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNConv2d(_SpectralNorm):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 eps: float = 1e-4) -> None:
        super().__init__()
        layer = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)
        self._init_sn(layer.weight.detach().clone(), eps)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if bias else None
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


def standing_stats(stack: torch.Tensor, truncation: float) -> torch.Tensor:
    """Blend of the 50 stored statistics (truncation 0.02, 0.04, ..., 1.0) exactly as the release does."""
    if not 0.02 - 1e-12 <= truncation <= 1.0 + 1e-12:
        raise UserInputError(f"truncation {truncation}: expected a value in [0.02, 1.0]")
    idx = round((truncation - 0.02) / 0.02)
    weight = round((truncation - idx * 0.02) / 0.02, 2)
    out = weight * stack[idx]
    if idx + 1 < stack.shape[0]:
        out = out + (1.0 - weight) * stack[idx + 1]
    return out


class StandingBatchNorm2d(nn.BatchNorm2d):
    """Batch norm that, in eval mode, uses the standing statistics stored for a truncation level."""

    def __init__(self, num_features: int, eps: float = 1e-4, affine: bool = True) -> None:
        super().__init__(num_features, eps=eps, affine=affine)
        self.register_buffer("standing_means", torch.zeros(50, num_features))
        self.register_buffer("standing_vars", torch.ones(50, num_features))

    def forward(self, x: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:  # type: ignore[override]
        if self.training:
            return super().forward(x)
        mean = standing_stats(self.standing_means, truncation)
        var = standing_stats(self.standing_vars, truncation)
        return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


class HyperBN(nn.Module):
    """Class- and z-conditional batch norm: (1 + gamma(c)) * bn(x) + beta(c)."""

    def __init__(self, num_features: int, cond_dim: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.crossreplicabn = StandingBatchNorm2d(num_features, eps=eps, affine=False)
        self.gamma = SNLinear(cond_dim, num_features, bias=False, eps=eps)
        self.beta = SNLinear(cond_dim, num_features, bias=False, eps=eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        scale = 1.0 + self.gamma(cond)[:, :, None, None]
        return scale * self.crossreplicabn(x, truncation) + self.beta(cond)[:, :, None, None]


class GBlock(nn.Module):
    """Residual up-block: BN-ReLU-up-conv-BN-ReLU-conv plus an up-sampled 1x1-conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.conv0 = SNConv2d(in_channels, out_channels, 3, eps=eps)
        self.conv1 = SNConv2d(out_channels, out_channels, 3, eps=eps)
        self.conv_sc = SNConv2d(in_channels, out_channels, 1, eps=eps)
        self.hyperbn = HyperBN(in_channels, cond_dim, eps)
        self.hyperbn_1 = HyperBN(out_channels, cond_dim, eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        shortcut = self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))
        h = F.interpolate(F.relu(self.hyperbn(x, cond, truncation)), scale_factor=2, mode="nearest")
        h = self.conv1(F.relu(self.hyperbn_1(self.conv0(h), cond, truncation)))
        return shortcut + h


class SelfAttention(nn.Module):
    """SAGAN non-local block with max-pooled keys and values."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, eps: float = 1e-4) -> None:
        super().__init__()
        self.theta = SNConv2d(channels, key_channels, 1, bias=False, eps=eps)
        self.phi = SNConv2d(channels, key_channels, 1, bias=False, eps=eps)
        self.g = SNConv2d(channels, value_channels, 1, bias=False, eps=eps)
        self.o_conv = SNConv2d(value_channels, channels, 1, bias=False, eps=eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        query = self.theta(x).flatten(2)  # [n, k, hw]
        key = F.max_pool2d(self.phi(x), 2).flatten(2)  # [n, k, hw/4]
        value = F.max_pool2d(self.g(x), 2).flatten(2)  # [n, v, hw/4]
        attn = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # [n, hw, hw/4]
        out = (value @ attn.transpose(1, 2)).view(n, -1, h, w)
        return x + self.gamma * self.o_conv(out)


class _LatentLinear(nn.Module):
    """First layer: z chunk -> 4x4 feature map (kept as a submodule for the release's key names)."""

    def __init__(self, in_features: int, out_features: int, eps: float) -> None:
        super().__init__()
        self.g_linear = SNLinear(in_features, out_features, eps=eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.g_linear(z)


class BigGAN(nn.Module):
    """BigGAN-128 restricted to ``class_ids``; ``decode`` returns ``output_size`` RGB images in [0, 1]."""

    def __init__(self, ch: int = 96, embed_dim: int = 128, n_imagenet_classes: int = 1000,
                 class_ids: Sequence[int] = PAPER_CLASS_IDS, output_size: int = 32, truncation: float = 1.0,
                 resize: str = "nearest", eps: float = 1e-4) -> None:
        super().__init__()
        if resize not in ("nearest", "area"):
            raise ValueError(f"resize {resize!r}: expected 'nearest' (the paper's) or 'area'")
        if not class_ids or min(class_ids) < 0 or max(class_ids) >= n_imagenet_classes:
            raise ValueError(f"class_ids {list(class_ids)}: need ids in 0..{n_imagenet_classes - 1}")
        standing_stats(torch.zeros(50, 1), truncation)  # validates the truncation level
        self.ch, self.embed_dim, self.n_imagenet_classes = int(ch), int(embed_dim), int(n_imagenet_classes)
        self.class_ids, self.truncation, self.resize = [int(c) for c in class_ids], float(truncation), resize
        self.latent_dim, self.num_classes = 6 * CHUNK, len(self.class_ids)
        self.image_shape = (3, int(output_size), int(output_size))
        self.eps = float(eps)
        cond = CHUNK + self.embed_dim
        widths = [m * self.ch for m in _MULTIPLIERS]
        self.linear = nn.Embedding(self.n_imagenet_classes, self.embed_dim)
        self.g_z = _LatentLinear(CHUNK, 4 * 4 * widths[0], self.eps)
        self.gblock = GBlock(widths[0], widths[1], cond, self.eps)
        self.gblock_1 = GBlock(widths[1], widths[2], cond, self.eps)
        self.gblock_2 = GBlock(widths[2], widths[3], cond, self.eps)
        self.gblock_3 = GBlock(widths[3], widths[4], cond, self.eps)
        self.attention = SelfAttention(widths[4], max(1, self.ch // 4), self.ch, self.eps)
        self.gblock_4 = GBlock(widths[4], widths[5], cond, self.eps)
        self.scaledcrossreplicabn = StandingBatchNorm2d(widths[5], eps=self.eps)
        self.conv_2d = SNConv2d(widths[5], 3, 3, eps=self.eps)
        self.register_buffer("_ids", torch.tensor(self.class_ids), persistent=False)

    def config(self) -> dict[str, Any]:
        return {"architecture": ARCHITECTURE, "ch": self.ch, "embed_dim": self.embed_dim,
                "n_imagenet_classes": self.n_imagenet_classes, "class_ids": self.class_ids,
                "output_size": self.image_shape[1], "truncation": self.truncation, "resize": self.resize,
                "eps": self.eps}

    def raw(self, z: torch.Tensor, imagenet_ids: torch.Tensor) -> torch.Tensor:
        """The released network: 128x128 tanh output for ImageNet class ids (z already scaled)."""
        t = self.truncation
        chunks = torch.split(z, CHUNK, dim=1)
        emb = self.linear(imagenet_ids)
        x = self.g_z(chunks[0]).view(z.shape[0], 4, 4, -1).permute(0, 3, 1, 2)
        blocks = (self.gblock, self.gblock_1, self.gblock_2, self.gblock_3, self.gblock_4)
        for index, block in enumerate(blocks):
            if index == 4:
                x = self.attention(x)
            x = block(x, torch.cat([chunks[index + 1], emb], dim=1), t)
        x = F.relu(self.scaledcrossreplicabn(x, t))
        return torch.tanh(self.conv_2d(x))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(tanh + 1) / 2 of G(truncation * z, class_ids[y]), resized to ``output_size``."""
        x = (self.raw(self.truncation * z, self._ids[y.long()]) + 1.0) / 2.0
        size = self.image_shape[1:]
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode=self.resize)
        return x

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.decode(z, y)

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> torch.Tensor:
        if device is None and generator is None:
            device = self.linear.weight.device
        return standard_normal_latent(n, self.latent_dim, generator, device)


def build_biggan(config: dict[str, Any]) -> BigGAN:
    """Rebuild :class:`BigGAN` from :meth:`BigGAN.config` output."""
    keys = ("ch", "embed_dim", "n_imagenet_classes", "class_ids", "output_size", "truncation", "resize", "eps")
    return BigGAN(**{k: config[k] for k in keys if k in config})


def default_weights_path() -> Path | None:
    """The first existing of $IROB_DATA/biggan/biggan128-release.pt and ./data/biggan/biggan128-release.pt."""
    roots = [Path(os.environ["IROB_DATA"])] if os.environ.get("IROB_DATA") else []
    for root in [*roots, Path("data")]:
        if (root / "biggan" / WEIGHTS_NAME).is_file():
            return root / "biggan" / WEIGHTS_NAME
    return None


def load_biggan128(weights: str | os.PathLike[str] | None = None, **overrides: Any) -> BigGAN:
    """The paper's BigGAN-128 with the released weights loaded strictly (``torch.load(weights_only=True)``)."""
    from intrinsic_robustness.weights import load_state_strict, read_weights

    path = Path(weights) if weights is not None else default_weights_path()
    if path is None:
        raise UserInputError(f"biggan128: no weights; download {WEIGHTS_NAME} from "
                             "github.com/ivclab/BigGAN-Generator-Pretrained-Pytorch (releases) and pass "
                             f"--generator-weights FILE or put it at $IROB_DATA/biggan/{WEIGHTS_NAME}")
    state = read_weights(path)
    if any(k.endswith(".u0") or k.startswith("shared.") for k in state):
        raise UserInputError(f"{path}: looks like an ajbrock/BigGAN-PyTorch checkpoint; the paper used the "
                             f"TF-Hub conversion {WEIGHTS_NAME} (ivclab/BigGAN-Generator-Pretrained-Pytorch)")
    gen = BigGAN(**overrides)
    load_state_strict(gen, state, source=str(path))
    return gen
