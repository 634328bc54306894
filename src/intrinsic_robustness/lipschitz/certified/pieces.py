"""The building blocks of an extracted generator: affine pieces, affine blocks and elementwise activations.

A piece is an affine map on one example, ``x -> linear(x) + bias``, applied to a batch of inputs of shape
``(m, *in_shape)``. A block is a run of pieces with no activation in between. All maths is float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Shape = tuple[int, ...]


def numel(shape: Shape) -> int:
    return int(math.prod(shape))


@dataclass
class Piece:
    """An affine map of one example: ``kind`` names it, ``bias`` (out_shape) is None for a linear map."""

    kind: str
    in_shape: Shape
    out_shape: Shape
    bias: torch.Tensor | None = None

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        """|A| x for a non-negative batch x (|A| the entrywise absolute value of the matrix)."""
        raise NotImplementedError

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y if self.bias is None else y + self.bias

    def describe(self) -> str:
        return f"{self.kind} {self.in_shape}->{self.out_shape}"

    def linear_flat(self, x: torch.Tensor) -> torch.Tensor:
        """The linear part on flat batches (m, n_in) -> (m, n_out)."""
        return self.linear(x.reshape(x.shape[0], *self.in_shape)).reshape(x.shape[0], -1)


@dataclass
class DensePiece(Piece):
    """x -> x W^T along the last axis (Linear, matmul by a constant)."""

    weight: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0))

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.abs())


@dataclass
class ConvPiece(Piece):
    """A 1-d or 2-d convolution or transposed convolution (``func`` is the torch function, ``options`` its
    arguments after input, weight and bias)."""

    weight: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    func: Callable[..., torch.Tensor] = F.conv2d
    options: dict = field(default_factory=dict)
    transposed: bool = False

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x, self.weight, None, **self.options)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x, self.weight.abs(), None, **self.options)


@dataclass
class ScalePiece(Piece):
    """x -> scale * x elementwise (scale broadcastable to in_shape: a scalar, per channel, or per element)."""

    scale: torch.Tensor = field(default_factory=lambda: torch.ones(()))

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.abs()


@dataclass
class ReshapePiece(Piece):
    """A change of shape that keeps the row-major order (view, reshape, flatten, eval-mode dropout...)."""

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass
class EmbedPiece(Piece):
    """Concatenation with constants along per-example axis ``dim``: x lands at ``start``; the constants
    are the bias."""

    dim: int = 0
    start: int = 0

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros((x.shape[0], *self.out_shape))
        out.narrow(self.dim + 1, self.start, self.in_shape[self.dim]).copy_(x)
        return out

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


@dataclass
class NonnegPiece(Piece):
    """A linear map with non-negative matrix given as a function (resizing, average pooling, padding)."""

    func: Callable[[torch.Tensor], torch.Tensor] = lambda x: x

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.func(x)


@dataclass
class Block:
    """A composition of pieces acting on flat vectors: (m, n_in) -> (m, n_out)."""

    pieces: list[Piece]
    in_shape: Shape
    out_shape: Shape

    @property
    def n_in(self) -> int:
        return numel(self.in_shape)

    @property
    def n_out(self) -> int:
        return numel(self.out_shape)

    def _run(self, x: torch.Tensor, method: str) -> torch.Tensor:
        h = x.reshape(x.shape[0], *self.in_shape)
        for piece in self.pieces:
            h = getattr(piece, method)(h)
        return h.reshape(x.shape[0], self.n_out)

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, "linear")

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x, "affine")

    def abs_linear(self, x: torch.Tensor) -> torch.Tensor:
        """An entrywise upper bound |A_1|...|A_k| x on |A| x, for non-negative x."""
        return self._run(x, "abs_linear")


def chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, rows: int) -> torch.Tensor:
    """fn applied to row chunks of x (bounds the memory of batched convolutions)."""
    if x.shape[0] <= rows:
        return fn(x)
    return torch.cat([fn(x[i:i + rows]) for i in range(0, x.shape[0], rows)])


def linear_transpose(fn: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor, n_in: int) -> torch.Tensor:
    """u -> A^T u for each row u of ``rows``, where fn is the linear map A on flat batches (by autograd)."""
    x = rows.new_zeros((rows.shape[0], n_in), requires_grad=True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(fn(x), x, grad_outputs=rows)
    return grad.detach()


@dataclass(frozen=True)
class Activation:
    """An elementwise non-decreasing activation: piecewise linear (``kinks``, ``slopes``) or smooth S-shaped
    (``tanh``, ``sigmoid``)."""

    kind: str
    kinks: tuple[float, ...] = ()
    slopes: tuple[float, ...] = ()
    name: str = ""

    @property
    def smooth(self) -> bool:
        return self.kind in ("tanh", "sigmoid")

    def value(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "tanh":
            return torch.tanh(x)
        if self.kind == "sigmoid":
            return torch.sigmoid(x)
        return _piecewise_value(x, self.kinks, self.slopes)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """f'(x); at a kink the slope of the piece to the right (any one-sided slope is a valid centre)."""
        if self.kind == "tanh":
            return 1.0 - torch.tanh(x) ** 2
        if self.kind == "sigmoid":
            s = torch.sigmoid(x)
            return s * (1.0 - s)
        index = torch.bucketize(x, torch.tensor(self.kinks, dtype=x.dtype, device=x.device), right=True)
        return torch.tensor(self.slopes, dtype=x.dtype, device=x.device)[index]

    def global_range(self) -> tuple[float, float]:
        """[min, max] of f' over the real line."""
        if self.kind == "tanh":
            return 0.0, 1.0
        if self.kind == "sigmoid":
            return 0.0, 0.25
        return min(self.slopes), max(self.slopes)

    def derivative_range(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Elementwise [min, max] of f' over [lo, hi] (widened by 1e-12 relative for float rounding)."""
        if self.smooth:
            dmin = torch.minimum(self.derivative(lo), self.derivative(hi))
            dmax = self.derivative(torch.clamp(torch.zeros_like(lo), lo, hi))
            return (dmin * (1 - 1e-12) - 1e-15).clamp_min(0.0), dmax * (1 + 1e-12) + 1e-15
        dmin = torch.full_like(lo, math.inf)
        dmax = torch.full_like(lo, -math.inf)
        edges = (-math.inf, *self.kinks, math.inf)
        for i, slope in enumerate(self.slopes):
            meets = (hi >= edges[i]) & (lo <= edges[i + 1])
            dmin = torch.where(meets, torch.clamp(dmin, max=slope), dmin)
            dmax = torch.where(meets, torch.clamp(dmax, min=slope), dmax)
        return dmin, dmax

    def relaxation(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lam, mid, half): f(x) in lam * x + mid + [-half, half] for every x in [lo, hi] (zonotope style)."""
        width = hi - lo
        flat = width <= 1e-12 * (1.0 + lo.abs())
        safe = torch.where(flat, torch.ones_like(width), width)
        if self.smooth:
            lam = torch.minimum(self.derivative(lo), self.derivative(hi))
            points = [lo, hi]  # f - lam x is non-decreasing on [lo, hi] since f' >= lam there
        else:
            lam = (self.value(hi) - self.value(lo)) / safe
            points = [lo, hi] + [torch.clamp(torch.full_like(lo, k), lo, hi) for k in self.kinks]
        lam = torch.where(flat, self.derivative(lo), lam).clamp_min(0.0)
        g = torch.stack([self.value(p) - lam * p for p in points])
        g_lo, g_hi = g.min(dim=0).values, g.max(dim=0).values
        slack = 1e-12 * (g.abs().max(dim=0).values + 1.0) + 1e-12 * width * lam
        return lam, (g_lo + g_hi) / 2, (g_hi - g_lo) / 2 + slack


def _piecewise_value(x: torch.Tensor, kinks: tuple[float, ...], slopes: tuple[float, ...]) -> torch.Tensor:
    """Continuous piecewise-linear function with f(first kink) = 0 shifted so that clamp/relu come out exact."""
    if kinks == (0.0,):
        return torch.where(x >= 0, x * slopes[1], x * slopes[0])
    # clamp-type: slopes are 0 or 1; evaluate as a clamp between the kinks where slope is 1
    lo = kinks[0] if slopes[0] == 0 else None
    hi = kinks[-1] if slopes[-1] == 0 else None
    return torch.clamp(x, min=lo, max=hi)
