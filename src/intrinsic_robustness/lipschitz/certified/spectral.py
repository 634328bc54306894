"""Provable upper bounds on spectral norms (never power-iteration estimates), in float64.

* dense matrices up to ``DENSE_CAP`` entries with a side of at most ``GRAM_CAP``: exact, the square root
  of the top eigenvalue of the Gram matrix of the smaller side (``torch.linalg.eigvalsh``);
* larger dense matrices: the Gram-iteration bound ||W||_2 <= ||G_t||_F^(1/2^t), G_0 = W, G_t+1 = G_t^T G_t;
* convolutions (1-d/2-d, any stride, dilation, padding, groups; transposed ones through their adjoint): the
  zero-padded strided convolution is rewritten as a stride-1 convolution of the polyphase (space-to-depth)
  image, which is a submatrix of a circular convolution on an N-grid large enough that nothing wraps; its
  norm is the largest spectral norm of the per-frequency channel matrices (FFT over the N-grid);
* non-negative maps (resizing, average pooling, padding): sqrt(max row sum * max column sum) (Schur test),
  exact for nearest-neighbour resizing.

Every value is multiplied by (1 + MARGIN) to absorb float64 rounding (whose relative size here is below
1e-9: eigvalsh is backward stable and the Gram/FFT sums have at most ~1e5 terms).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from intrinsic_robustness.lipschitz.certified.pieces import (
    ConvPiece,
    DensePiece,
    EmbedPiece,
    NonnegPiece,
    Piece,
    ReshapePiece,
    ScalePiece,
    chunked,
    linear_transpose,
    numel,
)

MARGIN = 1e-6
DENSE_CAP = 1 << 24  # largest dense matrix built (entries; 128 MiB in float64)
GRAM_CAP = 4096  # largest Gram side decomposed exactly
CHUNK = 512  # basis vectors pushed through a map at once


def inflate(value: float) -> float:
    """A computed norm turned into a safe upper bound (relative margin for float rounding)."""
    return float(value) * (1.0 + MARGIN)


def fits_dense(n_in: int, n_out: int) -> bool:
    return n_in * n_out <= DENSE_CAP and min(n_in, n_out) <= GRAM_CAP


def exact_norm(matrix: torch.Tensor) -> float:
    """||M||_2 of a float64 matrix: exact (Gram eigenvalue) when a side is small, else Gram iteration."""
    m = matrix.to(torch.float64)
    if m.numel() == 0:
        return 0.0
    if min(m.shape) > GRAM_CAP:
        return gram_iteration_bound(m)
    gram = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    top = float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0))
    return inflate(math.sqrt(top))


def gram_iteration_bound(matrix: torch.Tensor, steps: int = 6) -> float:
    """||W||_2 <= ||G_t||_F^(1/2^t) (Gram iteration, rescaled each step so nothing overflows)."""
    h = matrix.to(torch.float64)
    log_scale = 0.0
    for _ in range(steps):
        f = float(torch.linalg.matrix_norm(h))
        if f == 0.0:
            return 0.0
        h = h / f
        log_scale = 2.0 * (log_scale + math.log(f))
        h = h @ h.T if h.shape[0] <= h.shape[1] else h.T @ h
    f = float(torch.linalg.matrix_norm(h))
    return 0.0 if f == 0.0 else inflate(math.exp((log_scale + math.log(f)) / 2 ** steps))


def dense_matrix(fn: Callable[[torch.Tensor], torch.Tensor], n_in: int, n_out: int,
                 like: torch.Tensor) -> torch.Tensor:
    """The (n_out, n_in) matrix of a linear map on flat batches, built from the smaller side."""
    eye = torch.eye(min(n_in, n_out), dtype=torch.float64, device=like.device)
    if n_in <= n_out:
        return chunked(fn, eye, CHUNK).T
    return chunked(lambda u: linear_transpose(fn, u, n_in), eye, CHUNK)


def conv_norm_bound(piece: ConvPiece) -> float:
    """FFT bound for a (transposed) convolution piece; see the module docstring."""
    weight = piece.weight
    spatial = piece.out_shape[1:] if piece.transposed else piece.in_shape[1:]
    d = len(spatial)
    opts = piece.options
    stride, dilation = _pair(opts.get("stride", 1), d), _pair(opts.get("dilation", 1), d)
    kernel = tuple(int(k) for k in weight.shape[2:])
    pad_total = _pad_total(opts.get("padding", 0), kernel, dilation, d)
    padded = [s + p for s, p in zip(spatial, pad_total, strict=True)]
    if d == 1:
        weight, padded, stride, dilation = weight[:, :, None, :], [1, padded[0]], (1, *stride), (1, *dilation)
    groups = int(opts.get("groups", 1))
    per = weight.shape[0] // groups
    return max(_symbol_bound(weight[g * per:(g + 1) * per], padded, stride, dilation) for g in range(groups))


def _pair(v: object, d: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if isinstance(v, list | tuple) else (int(v),) * d  # type: ignore[arg-type]


def _pad_total(padding: object, kernel: tuple[int, ...], dilation: tuple[int, ...], d: int) -> list[int]:
    if padding == "valid":
        return [0] * d
    if padding == "same":
        return [dl * (k - 1) for k, dl in zip(kernel, dilation, strict=True)]
    return [2 * p for p in _pair(padding, d)]


def _symbol_bound(weight: torch.Tensor, padded: list[int], stride: tuple[int, ...],
                  dilation: tuple[int, ...]) -> float:
    """Norm bound of the valid strided dilated correlation with ``weight`` on a zero-padded image."""
    co, ci, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1  # dilated kernel extent
    if padded[0] < eh or padded[1] < ew:
        return 0.0  # empty output
    out_h, out_w = (padded[0] - eh) // sh + 1, (padded[1] - ew) // sw + 1
    ph, pw = -(-eh // sh), -(-ew // sw)  # polyphase kernel extent
    k = weight.new_zeros(co, ci, ph * sh, pw * sw)
    k[:, :, :eh:dh, :ew:dw] = weight
    poly = k.reshape(co, ci, ph, sh, pw, sw).permute(0, 1, 3, 5, 2, 4).reshape(co, ci * sh * sw, ph, pw)
    n_h = max(-(-padded[0] // sh), out_h + ph - 1)
    n_w = max(-(-padded[1] // sw), out_w + pw - 1)
    symbol = torch.fft.fft2(poly, s=(n_h, n_w)).permute(2, 3, 0, 1).reshape(n_h * n_w, co, ci * sh * sw)
    top = 0.0
    for start in range(0, symbol.shape[0], 256):
        top = max(top, float(torch.linalg.matrix_norm(symbol[start:start + 256], ord=2).max()))
    return inflate(top)


def nonneg_norm_bound(fn: Callable[[torch.Tensor], torch.Tensor], n_in: int, like: torch.Tensor) -> float:
    """Schur test for a map with a non-negative matrix A: ||A||_2 <= sqrt(||A 1||_inf ||A^T 1||_inf)."""
    ones = torch.ones(1, n_in, dtype=torch.float64, device=like.device)
    rows = fn(ones)
    cols = linear_transpose(fn, torch.ones_like(rows), n_in)
    return inflate(math.sqrt(float(rows.max()) * float(cols.max())))


def piece_norm(piece: Piece, like: torch.Tensor) -> float:
    """A provable bound on the norm of one piece's linear part."""
    n_in, n_out = numel(piece.in_shape), numel(piece.out_shape)
    if isinstance(piece, ReshapePiece | EmbedPiece):
        return 1.0
    if isinstance(piece, ScalePiece):
        return float(piece.scale.abs().max())
    if isinstance(piece, DensePiece):  # on a tensor with extra axes it is block diagonal: same norm
        return exact_norm(piece.weight)
    if fits_dense(n_in, n_out):
        return exact_norm(dense_matrix(piece.linear_flat, n_in, n_out, like))
    if isinstance(piece, ConvPiece):
        return conv_norm_bound(piece)
    if isinstance(piece, NonnegPiece):
        return nonneg_norm_bound(piece.linear_flat, n_in, like)
    raise TypeError(f"no norm bound for piece {piece.describe()}")


def fold_scales(pieces: list[Piece]) -> tuple[list[Piece], float]:
    """Pieces with elementwise scalings folded into the preceding dense/conv piece where the shapes allow,
    and the product of the scalar factors taken out."""
    kept: list[Piece] = []
    factor = 1.0
    for piece in pieces:
        if isinstance(piece, ScalePiece) and piece.scale.dim() == 0:
            factor *= abs(float(piece.scale))
            continue
        if isinstance(piece, ReshapePiece):
            continue
        if isinstance(piece, ScalePiece) and kept:
            folded = _fold(kept[-1], piece.scale.expand(piece.in_shape).reshape(-1))
            if folded is not None:
                kept[-1] = folded
                continue
        kept.append(piece)
    return kept, factor


def _fold(prev: Piece, scale: torch.Tensor) -> Piece | None:
    if isinstance(prev, DensePiece) and len(prev.out_shape) == 1:
        return DensePiece(prev.kind, prev.in_shape, prev.out_shape, None, weight=prev.weight * scale[:, None])
    if not isinstance(prev, ConvPiece) or int(prev.options.get("groups", 1)) != 1:
        return None
    per_channel = scale.reshape(prev.out_shape[0], -1)
    if not torch.equal(per_channel, per_channel[:, :1].expand_as(per_channel)):
        return None
    s = per_channel[:, 0]
    view = [1] * prev.weight.dim()
    view[1 if prev.transposed else 0] = -1
    return ConvPiece(prev.kind, prev.in_shape, prev.out_shape, None, weight=prev.weight * s.reshape(view),
                     func=prev.func, options=prev.options, transposed=prev.transposed)


def block_norm(pieces: list[Piece], n_in: int, n_out: int, like: torch.Tensor,
               fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Bound on the norm of a composition of pieces (``fn`` its flat linear map): exact when the dense
    matrix fits, else the product of the folded pieces' bounds."""
    if fits_dense(n_in, n_out):
        return exact_norm(dense_matrix(fn, n_in, n_out, like))
    kept, factor = fold_scales(pieces)
    bound = factor
    for piece in kept:
        bound *= piece_norm(piece, like)
    return bound


class StreamNorm:
    """A provable bound on ||X||_2 for a (rows x cols) matrix X that arrives in column chunks.

    Exact (Gram eigenvalue) when one side is at most ``gram_cap``, else min(Frobenius, Schur test).
    Chunks are given transposed: shape (columns in chunk, rows).
    """

    def __init__(self, rows: int, cols: int, gram_cap: int = GRAM_CAP) -> None:
        self.rows, self.cols = rows, cols
        if cols <= min(rows, gram_cap) and rows * cols <= DENSE_CAP:
            self.mode = "cols"
        elif rows <= gram_cap:
            self.mode = "rows"
        else:
            self.mode = "stream"
        self.parts: list[torch.Tensor] = []
        self.gram: torch.Tensor | None = None
        self.frob2, self.col_abs = 0.0, 0.0
        self.row_abs: torch.Tensor | None = None

    def add(self, chunk: torch.Tensor) -> None:
        if self.mode == "cols":
            self.parts.append(chunk)
        elif self.mode == "rows":
            g = chunk.T @ chunk
            self.gram = g if self.gram is None else self.gram + g
        else:
            self.frob2 += float((chunk * chunk).sum())
            self.col_abs = max(self.col_abs, float(chunk.abs().sum(dim=1).max()))
            r = chunk.abs().sum(dim=0)
            self.row_abs = r if self.row_abs is None else self.row_abs + r

    def bound(self) -> float:
        if self.mode == "cols":
            if not self.parts:
                return 0.0
            x = torch.cat(self.parts)
            return _top(x @ x.T)
        if self.mode == "rows":
            return 0.0 if self.gram is None else _top(self.gram)
        if self.row_abs is None:
            return 0.0
        schur = math.sqrt(float(self.row_abs.max()) * self.col_abs)
        return inflate(min(math.sqrt(self.frob2), schur))


def _top(gram: torch.Tensor) -> float:
    if gram.numel() == 0:
        return 0.0
    return inflate(math.sqrt(float(torch.linalg.eigvalsh(gram)[-1].clamp_min(0.0))))
