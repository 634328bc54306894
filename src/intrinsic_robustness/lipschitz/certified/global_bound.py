"""Certified global Lipschitz constants: sup over all z of ||J(z)||_2 for decode(., y), bounded from above.

J = W_L D_{L-1} W_{L-1} ... D_0 W_0 with W_k the blocks' linear parts and D_k diagonal with entries in the
activation's derivative range [lo_k, hi_k]. Writing D_k = c_k I + m_k S_k (c, m the range's midpoint and
half-width, ||S_k|| <= 1) and expanding the product, every term is bounded by the norms of the contiguous
products of blocks between the S factors (exact where their dense matrix fits), and the sum over all
subsets is a short dynamic programme. It is never worse than the product of per-layer norms times the
derivative maxima, and equal to ||A||_2 for clamp(A z + b).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.certified.graph import Chain, extract_chain
from intrinsic_robustness.lipschitz.certified.spectral import block_norm, dense_matrix, exact_norm, fits_dense
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.runtime import module_device, resolve_device


@dataclass
class GlobalAnalysis:
    """Segment norm bounds of one chain and the bounds built from them."""

    segments: dict[tuple[int, int], float]
    block_norms: list[float]
    product: float  # product of block norms times derivative maxima (the textbook bound)
    bound: float  # the dynamic-programme bound (<= product)
    suffix: list[float]  # suffix[j] bounds sup_D ||W_L D ... D_j W_j|| (suffix[L + 1] = 1)
    mids: list[float]  # midpoint of each activation's global derivative range
    halves: list[float]  # half-width of each activation's global derivative range

    def sub_chain(self, start: int, stop: int) -> float:
        """sup over all derivatives of ||W_stop D ... D_start W_start|| (blocks start..stop)."""
        return expansion_bound(self.segments, self.mids, self.halves, start, stop)


def _composite(chain: Chain, i: int, j: int):  # noqa: ANN202
    blocks = chain.blocks[i:j + 1]

    def fn(x: torch.Tensor) -> torch.Tensor:
        for b in blocks:
            x = b.linear(x)
        return x

    return fn


def segment_bounds(chain: Chain, like: torch.Tensor) -> dict[tuple[int, int], float]:
    """B[i, j] >= ||W_j ... W_i|| for all i <= j: exact when the product's dense matrix fits, else the best
    split into two bounded parts."""
    n = len(chain.blocks)
    seg: dict[tuple[int, int], float] = {}
    for i, b in enumerate(chain.blocks):
        seg[i, i] = block_norm(b.pieces, b.n_in, b.n_out, like, b.linear)
    for span in range(1, n):
        for i in range(n - span):
            j = i + span
            best = min(seg[i, k] * seg[k + 1, j] for k in range(i, j))
            n_in, n_out = chain.blocks[i].n_in, chain.blocks[j].n_out
            if fits_dense(n_in, n_out):
                best = min(best, exact_norm(dense_matrix(_composite(chain, i, j), n_in, n_out, like)))
            seg[i, j] = best
    return seg


def expansion_bound(seg: dict[tuple[int, int], float], mids: Sequence[float], halves: Sequence[float],
                    start: int, stop: int) -> float:
    """sup over D_k in c_k + m_k [-1, 1] (diagonal) of ||W_stop D_{stop-1} ... D_start W_start||.

    Sum over the activations t_1 < ... < t_r where the S-part is taken: prod(m at cuts) prod(c elsewhere)
    prod(segment norms between cuts), computed by a dynamic programme over the last cut.
    """

    def c_prod(a: int, b: int) -> float:
        return math.prod(mids[a:b])

    cut: dict[int, float] = {}
    for t in range(start, stop):
        total = c_prod(start, t) * seg[start, t]
        total += sum(cut[s] * c_prod(s + 1, t) * seg[s + 1, t] for s in range(start, t))
        cut[t] = halves[t] * total
    final = c_prod(start, stop) * seg[start, stop]
    return final + sum(cut[s] * c_prod(s + 1, stop) * seg[s + 1, stop] for s in range(start, stop))


def analyse(chain: Chain, like: torch.Tensor) -> GlobalAnalysis:
    """Segment bounds, textbook product bound, expansion bound and suffix bounds of one chain."""
    seg = segment_bounds(chain, like)
    ranges = [act.global_range() for act in chain.acts]
    mids = [(lo + hi) / 2 for lo, hi in ranges]
    halves = [(hi - lo) / 2 for lo, hi in ranges]
    n = len(chain.blocks)
    blocks = [seg[i, i] for i in range(n)]
    product = math.prod(blocks) * math.prod(max(abs(lo), abs(hi)) for lo, hi in ranges)
    suffix = [expansion_bound(seg, mids, halves, j, n - 1) for j in range(n)] + [1.0]
    return GlobalAnalysis(seg, blocks, product, min(product, suffix[0]), suffix, mids, halves)


def certified_global(gen: nn.Module, classes: Sequence[int] | None = None,
                     device: str | torch.device = "cpu") -> list[float]:
    """Per class, an upper bound on the global Lipschitz constant of decode(., y) (L2 in, L2 out, [0,1] scale).

    Classes whose chains differ only in biases (e.g. an ACGAN's one-hot input) share one computation.
    """
    labels = check_classes(gen, classes)
    dev = resolve_device(device)
    if module_device(gen) != dev:
        gen.to(dev)
    done: list[tuple[Chain, float]] = []
    out = []
    with frozen(gen):
        for label in labels:
            chain = extract_chain(gen, label, dev)
            value = next((v for c, v in done if c.same_linear_part(chain)), None)
            if value is None:
                value = analyse(chain, torch.zeros((), dtype=torch.float64, device=dev)).bound
                done.append((chain, value))
            out.append(value)
    return out


def check_classes(gen: object, classes: Sequence[int] | None) -> list[int]:
    """Validated class list (all classes when None), with one-line errors."""
    for attr in ("latent_dim", "num_classes", "decode"):
        if not hasattr(gen, attr):
            raise UserInputError(f"generator has no '{attr}'; pass a conditional generator "
                                 "(latent_dim, num_classes, decode(z, y))")
    k = int(gen.num_classes)  # type: ignore[attr-defined]
    labels = list(range(k)) if classes is None else [int(c) for c in classes]
    if not labels or len(set(labels)) != len(labels) or any(not 0 <= c < k for c in labels):
        raise UserInputError(f"classes {classes!r}: need distinct class indices in 0..{k - 1}")
    return labels
