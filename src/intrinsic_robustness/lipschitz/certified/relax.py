"""Bounds on every pre-activation over the latent ball ||z' - z|| <= r (zonotope propagation).

Each pre-activation is kept as ``centre + A^T d + G^T e + [-box, box]`` with d in the radius-r L2 ball
(A has one row per latent direction, so the first layer is exact: c_i +- r ||w_i||), e in [-1, 1]^s (one
symbol per relaxed unit) and a box for symbols folded away when there are too many. An activation over an
interval [lo, hi] is replaced by ``lam x + mid + half e_new`` (for ReLU the chord of the DeepZ relaxation);
stable units pass exactly. All in float64, widened by a relative 1e-9 for rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from intrinsic_robustness.lipschitz.certified.graph import Chain
from intrinsic_robustness.lipschitz.certified.pieces import chunked

ROW_CHUNK = 256  # generator rows pushed through a block at once
MEMORY_ENTRIES = 1 << 24  # most symbol-generator entries kept (128 MiB in float64)


@dataclass
class LayerBox:
    """Bounds of one activation layer's pre-activations over the ball, and their value at the anchor."""

    anchor: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor


@dataclass
class _Zonotope:
    centre: torch.Tensor  # (n,)
    ball: torch.Tensor  # (d, n): coefficients of the L2-ball variable
    symbols: torch.Tensor  # (s, n): coefficients of box symbols in [-1, 1]
    box: torch.Tensor  # (n,): extra interval radius

    def radius(self, r: float) -> torch.Tensor:
        return r * self.ball.norm(dim=0) + torch.linalg.vector_norm(self.symbols, 1, dim=0) + self.box


def preactivation_boxes(chain: Chain, z: torch.Tensor, radius: float, first: torch.Tensor,
                        max_symbols: int = 512) -> list[LayerBox]:
    """Pre-activation bounds of every activation layer over the ball of ``radius`` around latent ``z``.

    ``first`` is the first block's linear part applied to the identity (d, n_0), shared by all anchors.
    """
    pre, _ = chain.forward(z[None].to(torch.float64))
    zono = _Zonotope(pre[0][0] if pre else chain.blocks[0].affine(z[None].double())[0], first,
                     first.new_zeros((0, first.shape[1])), first.new_zeros(first.shape[1]))
    boxes = []
    for k, act in enumerate(chain.acts):
        rad = zono.radius(radius)
        slack = 1e-9 * (zono.centre.abs() + rad) + 1e-12
        lo, hi = zono.centre - rad - slack, zono.centre + rad + slack
        anchor = pre[k][0]
        boxes.append(LayerBox(anchor, torch.minimum(lo, anchor), torch.maximum(hi, anchor)))
        if k == len(chain.acts) - 1:
            break
        keep = max(0, min(max_symbols, MEMORY_ENTRIES // max(1, chain.blocks[k + 1].n_out)))
        zono = _through_block(_through_activation(zono, act.relaxation(lo, hi), keep), chain.blocks[k + 1])
    return boxes


def _through_activation(zono: _Zonotope, relax: tuple[torch.Tensor, ...], keep: int) -> _Zonotope:
    """Apply the relaxation; keep the ``keep`` symbols (old or new) of largest L1 norm, fold the rest into
    the box. New symbols are one-hot, so only the kept ones are materialised."""
    lam, mid, half = relax
    symbols = zono.symbols * lam
    box = zono.box * lam
    fresh = torch.nonzero(half > 0).flatten()
    norms = torch.cat([torch.linalg.vector_norm(symbols, 1, dim=1), half[fresh]])
    order = torch.argsort(norms, descending=True)
    kept, folded = order[:keep], order[keep:]
    n_old = symbols.shape[0]
    old_folded, new_folded = folded[folded < n_old], fresh[folded[folded >= n_old] - n_old]
    if old_folded.numel():
        box = box + torch.linalg.vector_norm(symbols[old_folded], 1, dim=0)
    box = box.index_add(0, new_folded, half[new_folded])
    new_units = fresh[kept[kept >= n_old] - n_old]
    new = symbols.new_zeros((new_units.numel(), symbols.shape[1]))
    new[torch.arange(new_units.numel(), device=new.device), new_units] = half[new_units]
    return _Zonotope(lam * zono.centre + mid, zono.ball * lam, torch.cat([symbols[kept[kept < n_old]], new]), box)


def _through_block(zono: _Zonotope, block) -> _Zonotope:  # noqa: ANN001
    centre = block.affine(zono.centre[None])[0]
    ball = chunked(block.linear, zono.ball, ROW_CHUNK)
    symbols = chunked(block.linear, zono.symbols, ROW_CHUNK) if zono.symbols.shape[0] else \
        zono.symbols.new_zeros((0, block.n_out))
    box = block.abs_linear(zono.box[None])[0]
    return _Zonotope(centre, ball, symbols, box)
