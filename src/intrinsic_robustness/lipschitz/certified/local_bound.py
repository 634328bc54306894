"""Certified local Lipschitz constants: per anchor z, an upper bound on sup ||J(z')||_2 over ||z' - z|| <= r.

By the mean value inequality along segments (the ball is convex; on a segment the network is differentiable
almost everywhere with Jacobians in the same derivative box), this bounds the local constant
sup ||G(z') - G(z)|| / ||z' - z|| over the ball (indeed the quotient of any two points of the ball).

Layer by layer, each activation's derivative over the ball lies in a box D_k in [lo_k, hi_k]. Around a
centre C_k (the anchor's derivatives, or the boxes' midpoints) write D_k = C_k + E_k with |E_k| <= M_k,
supported on the units U_k whose derivative can vary. Telescoping, for any R in layer l's input space,

    sup ||W_t D ... D_l R|| <= ||W_t C ... C_l R|| + sum_m Q_m ||M_m R_m[U_m]||,

where R_m is R pushed through the centred network to layer m and Q_m bounds sup ||W_t D ... W_m+1[:, U_m]||
by the same formula. With the target t a single pre-activation row this bounds that unit's gradient norm
over the ball, hence its range (r times it): that gives the next layer's box. With t the output it bounds
the Jacobian. Every norm is exact (Gram eigenvalue) or a provable bound; sets of varying units too large
to handle exactly fall back to the global bound of that sub-chain. Each split is also tried with balancing
weights, a last activation followed by a diagonal map is replaced by its largest derivative, and the
result is the minimum over the centrings tried and the certified global constant. The anchored quotient
then integrates these Jacobian bounds over balls of growing radius (:func:`quotient_bound`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.certified.global_bound import GlobalAnalysis, analyse, check_classes
from intrinsic_robustness.lipschitz.certified.graph import Chain, extract_chain
from intrinsic_robustness.lipschitz.certified.pieces import Activation, ReshapePiece, ScalePiece, chunked
from intrinsic_robustness.lipschitz.certified.relax import LayerBox, preactivation_boxes
from intrinsic_robustness.lipschitz.certified.spectral import MARGIN, StreamNorm
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.progress import advance, task
from intrinsic_robustness.runtime import module_device, resolve_device

CENTRINGS = ("anchor", "midpoint")
ROW_CHUNK = 256


class LocalSettings:
    """Knobs that trade time and memory for tightness, never soundness: zonotope symbols kept per layer,
    varying units per layer handled exactly, side of Gram matrices decomposed exactly, float64 entries kept,
    and the centrings tried."""

    def __init__(self, max_symbols: int = 256, max_columns: int = 4096, gram_cap: int = 2048,
                 memory: int = 1 << 25, centrings: Sequence[str] = ("midpoint",)) -> None:
        bad = [c for c in centrings if c not in CENTRINGS]
        if bad or not centrings:
            raise UserInputError(f"centrings {list(centrings)!r}: choose from {', '.join(CENTRINGS)}")
        self.max_symbols, self.max_columns, self.gram_cap = max_symbols, max_columns, gram_cap
        self.memory, self.centrings = memory, tuple(centrings)


class _Stream:
    """Columns pushed through the centred network, stored transposed (one row per column)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.norms: dict[int, float] = {}  # layer m -> bound on ||M_m X_m[U_m]||
        self.parts: dict[int, torch.Tensor] = {}  # layer m -> M_m X_m[U_m] itself (kept for reweighting)

    def correction(self, q: dict[int, torch.Tensor | float]) -> torch.Tensor | float:
        return sum((q[m] * self.norms[m] for m in q if m in self.norms), 0.0)


class _Pass:
    """The incremental computation for one anchor and one centring."""

    def __init__(self, chain: Chain, analysis: GlobalAnalysis, first: torch.Tensor, centring: str,
                 settings: LocalSettings) -> None:
        self.chain, self.analysis, self.centring, self.settings = chain, analysis, centring, settings
        self.z = _Stream(first)
        self.streams: dict[int, _Stream] = {}  # source layer l -> columns W_l+1[:, U_l]
        self.varying: dict[int, int] = {}  # layer -> number of varying units
        self.kept = 0  # entries of the stored parts
        self.diagonal_tail = all(isinstance(p, ScalePiece | ReshapePiece) for p in chain.blocks[-1].pieces)

    def q_values(self, k: int | None, rows: bool) -> dict[int, torch.Tensor | float]:
        """Q_l for every layer l with varying units: per row of layer k's pre-activation (rows=True), or the
        spectral norm at the output (k=None); global sub-chain bounds where no stream was kept."""
        stop = len(self.chain.blocks) - 1 if k is None else k
        q: dict[int, torch.Tensor | float] = {}
        for src in sorted(self.varying, reverse=True):
            cap = self.analysis.sub_chain(src + 1, stop) if k is not None else self.analysis.suffix[src + 1]
            s = self.streams.get(src)
            if s is None:
                q[src] = cap
                continue
            head = s.x.norm(dim=0) if rows else _norm(s.x, self.settings.gram_cap)
            value = head + s.correction(q)
            q[src] = torch.clamp(value, max=cap) if isinstance(value, torch.Tensor) else min(value, cap)
        return q

    def layer(self, k: int, act: Activation, anchor: torch.Tensor, radius: float,
              outer: LayerBox | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Bounds of layer k's pre-activations over the ball (radius times a bound on each unit's gradient
        norm, intersected with ``outer``), then the streams extended past layer k."""
        q = self.q_values(k, rows=True)
        width = radius * (self.z.x.norm(dim=0) + self.z.correction(q))
        slack = 1e-9 * (anchor.abs() + width) + 1e-12
        lo, hi = anchor - width - slack, anchor + width + slack
        if outer is not None:
            lo, hi = torch.maximum(lo, outer.lo), torch.minimum(hi, outer.hi)
        centre, half = _centre(act, lo, hi, anchor, self.centring)
        if k == len(self.chain.acts) - 1 and self.diagonal_tail:
            # sup ||T D Y|| <= ||T D_max Y|| for diagonal T and |D| <= D_max: no variation left here
            centre, half = torch.maximum(centre + half, (centre - half).abs()), torch.zeros_like(half)
        units = torch.nonzero(half > 0).flatten()
        self._extend(k, centre, half, units)
        return lo, hi

    def _extend(self, k: int, centre: torch.Tensor, half: torch.Tensor, units: torch.Tensor) -> None:
        block = self.chain.blocks[k + 1]
        for s in [self.z, *self.streams.values()]:
            if units.numel():
                part = s.x[:, units] * half[units]
                s.norms[k] = _norm(part, self.settings.gram_cap)
                self.kept += part.numel()
                s.parts[k] = part
            s.x = chunked(block.linear, s.x * centre, ROW_CHUNK)
        if not units.numel():
            return
        self.varying[k] = units.numel()
        used = sum(s.x.numel() for s in [self.z, *self.streams.values()])
        if units.numel() <= self.settings.max_columns and used + units.numel() * block.n_out <= self.settings.memory:
            basis = self.z.x.new_zeros((units.numel(), block.n_in))
            basis[torch.arange(units.numel(), device=basis.device), units] = 1.0
            self.streams[k] = _Stream(chunked(block.linear, basis, ROW_CHUNK))

    def output(self) -> float:
        """Bound on sup ||J|| over the ball: the plain telescoping bound, and two rebalanced ones."""
        q = self.q_values(None, rows=False)
        best = _norm(self.z.x, self.settings.gram_cap) + float(self.z.correction(q))
        if self.kept > self.settings.memory or not self.streams:
            return best
        ratio = {m: self._ratio(m) for m in self.varying}
        for gamma in (1.0, 0.5):
            best = min(best, self._balanced({m: r ** (gamma / 2) for m, r in ratio.items()}))
        return best

    def _balanced(self, roots: dict[int, torch.Tensor]) -> float:
        """The telescoping bound with each split ||A S B|| <= ||A W^1/2|| ||W^-1/2 B|| (S diagonal with
        |S| <= 1, W any positive diagonal; ``roots`` are the W^1/2 per layer)."""
        gram = self.settings.gram_cap
        q: dict[int, float] = {}
        for src in sorted(self.varying, reverse=True):
            s, root = self.streams.get(src), roots[src]
            cap = self.analysis.suffix[src + 1] * float(root.max())
            if s is None:
                q[src] = cap
                continue
            value = _norm(s.x * root[:, None], gram) + sum(
                q[m] * _norm(s.parts[m] * root[:, None] / roots[m], gram) for m in q if m in s.parts)
            q[src] = min(value, cap)
        return _norm(self.z.x, gram) + sum(q[m] * _norm(self.z.parts[m] / roots[m], gram) for m in q)

    def _ratio(self, m: int) -> torch.Tensor:
        """First-order balancing weight of layer m's varying units: row norm of the part the latent stream
        sends there over the column norm of what the unit sends to the output (ones without a stream)."""
        b = self.z.parts[m].norm(dim=0)
        s = self.streams.get(m)
        if s is None:
            return torch.ones_like(b)
        a = s.x.norm(dim=1)
        return (b + 1e-6 * b.max() + 1e-300) / (a + 1e-6 * a.max() + 1e-300)


def _norm(x: torch.Tensor, gram_cap: int) -> float:
    """Provable bound on the spectral norm of the matrix whose columns are the rows of x."""
    acc = StreamNorm(x.shape[1], x.shape[0], gram_cap)
    acc.add(x)
    return acc.bound()


def _centre(act: Activation, lo: torch.Tensor, hi: torch.Tensor, anchor: torch.Tensor,
            centring: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and half-width of one layer's derivative box."""
    dlo, dhi = act.derivative_range(lo, hi)
    if centring == "midpoint":
        return (dlo + dhi) / 2, (dhi - dlo) / 2
    at = act.derivative(anchor).clamp(dlo, dhi)
    return at, torch.maximum(dhi - at, at - dlo)


def anchor_pass(chain: Chain, analysis: GlobalAnalysis, z: torch.Tensor, radius: float, first: torch.Tensor,
                centring: str, settings: LocalSettings,
                outer: list[LayerBox] | None = None) -> tuple[float, list[tuple[torch.Tensor, torch.Tensor]]]:
    """(sup of ||J|| over the ball, pre-activation bounds per layer) for one anchor and one centring;
    ``outer`` are other valid pre-activation bounds (the zonotope's) to intersect with."""
    pre, _ = chain.forward(z[None])
    state = _Pass(chain, analysis, first, centring, settings)
    boxes = [state.layer(k, act, pre[k][0], radius, None if outer is None else outer[k])
             for k, act in enumerate(chain.acts)]
    return state.output(), boxes


def jacobian_sup(chain: Chain, analysis: GlobalAnalysis, z: torch.Tensor, radius: float, first: torch.Tensor,
                 settings: LocalSettings) -> float:
    """Bound on sup ||J(z')||_2 over ||z' - z|| <= radius: min over centrings and the global bound."""
    values = [analysis.bound]
    if chain.acts and radius > 0:
        outer = preactivation_boxes(chain, z, radius, first, settings.max_symbols)
        values += [anchor_pass(chain, analysis, z, radius, first, c, settings, outer)[0]
                   for c in settings.centrings]
    elif chain.acts:
        values.append(anchor_pass(chain, analysis, z, 0.0, first, "anchor", settings)[0])
    return min(values) * (1.0 + MARGIN)


def quotient_bound(sups: dict[float, float], radius: float) -> float:
    """Anchored-quotient bound at ``radius`` from Jacobian-sup bounds S(s) on balls of radius s.

    ||G(z + d) - G(z)|| <= int_0^1 ||J(z + t d)|| ||d|| dt, and z + t d lies in the ball of radius t ||d||;
    the sup of ||J|| over balls grows with the radius, so the quotient is at most the upper Riemann sum
    sum_i (s_i - s_i-1) / r * S(s_i) over any partition 0 < s_1 < ... < s_k = r. Every computed radius up to
    r is a partition point; a value computed at a larger radius also bounds every smaller ball, so each S(s)
    is first replaced by the minimum over radii >= s (which also makes the result non-decreasing in r).
    """
    grid = sorted(sups)
    tight = [min(sups[t] for t in grid[i:]) for i in range(len(grid))]
    points = [(s, v) for s, v in zip(grid, tight, strict=True) if s <= radius]
    if not points or points[-1][0] != radius:
        raise ValueError(f"radius {radius} was not evaluated")
    total, previous = 0.0, 0.0
    for s, v in points:
        total += (s - previous) * v
        previous = s
    return total / radius


def _refinement(sups: dict[float, float], radius: float) -> float:
    """The midpoint of the partition interval of [0, radius] that contributes most to the Riemann sum's
    excess (width times rise of S)."""
    grid = sorted(s for s in sups if s <= radius)
    best, where, previous, low = -1.0, grid[0] / 2, 0.0, sups[grid[0]]
    for s in grid:
        excess = (s - previous) * (sups[s] - low) if previous else s * 1e-12
        if excess > best:
            best, where = excess, (previous + s) / 2
        previous, low = s, sups[s]
    return where


def local_curve(chain: Chain, analysis: GlobalAnalysis, z: torch.Tensor, radii: Sequence[float],
                first: torch.Tensor, settings: LocalSettings, steps: int, refine: int = 2) -> list[float]:
    """Certified anchored-quotient bounds of one anchor at several radii: Jacobian-sup bounds on ``steps``
    equally spaced balls per radius, ``refine`` more where the Riemann sum is coarsest, all shared."""
    cap = analysis.bound * (1.0 + MARGIN)
    sups: dict[float, float] = {}

    def evaluate(s: float) -> None:  # a ball at or beyond one that reached the global bound gets it free
        if s not in sups:
            reached = any(v >= cap and t <= s for t, v in sups.items())
            sups[s] = cap if reached else jacobian_sup(chain, analysis, z, s, first, settings)

    for s in sorted({float(r) * i / steps for r in radii for i in range(1, steps + 1)}):
        evaluate(s)
    for r in sorted(radii):
        for _ in range(refine):
            evaluate(_refinement(sups, r))
    return [quotient_bound(sups, float(r)) for r in radii]


def certified_local_curve(gen: nn.Module, anchors: torch.Tensor, label: int, radii: Sequence[float], *,
                          device: str | torch.device = "cpu", steps: int = 4, refine: int = 2,
                          settings: LocalSettings | None = None) -> torch.Tensor:
    """Certified local constants at several radii: float64 tensor [n, len(radii)], non-decreasing in r."""
    check_classes(gen, [label])
    radii = [float(r) for r in radii]
    _check_local_args(gen, anchors, radii, steps, refine)
    dev = resolve_device(device)
    if module_device(gen) != dev:
        gen.to(dev)
    with frozen(gen):
        chain = extract_chain(gen, int(label), dev)
    analysis = analyse(chain, torch.zeros((), dtype=torch.float64, device=dev))
    first = chain.blocks[0].linear(torch.eye(chain.latent_dim, dtype=torch.float64, device=dev))
    settings = settings or LocalSettings()
    out = torch.empty(anchors.shape[0], len(radii), dtype=torch.float64)
    with task(f"certified-local class {label}", anchors.shape[0]) as progress:
        for i, z in enumerate(anchors.to(device=dev, dtype=torch.float64)):
            out[i] = torch.tensor(local_curve(chain, analysis, z, radii, first, settings, steps, refine))
            advance(progress, 1)
    return out


def certified_local(gen: nn.Module, anchors: torch.Tensor, label: int, radius: float, *,
                    device: str | torch.device = "cpu", steps: int = 4, refine: int = 2,
                    settings: LocalSettings | None = None) -> torch.Tensor:
    """Per anchor z, an upper bound on sup ||G(z',y) - G(z,y)|| / ||z' - z|| over 0 < ||z' - z|| <= radius
    (float64 tensor [n] on CPU); never above the certified global constant.

    The quotient bound integrates Jacobian-sup bounds over ``steps`` equally spaced balls plus ``refine``
    adaptively placed ones (see :func:`quotient_bound`); ``steps=1, refine=0`` returns the sup of ||J||_2
    over the ball itself, which bounds the quotient of every pair of points in the ball.
    """
    return certified_local_curve(gen, anchors, label, [radius], device=device, steps=steps, refine=refine,
                                 settings=settings)[:, 0]


def _check_local_args(gen: nn.Module, anchors: torch.Tensor, radii: Sequence[float], steps: int,
                      refine: int) -> None:
    d = int(gen.latent_dim)  # type: ignore[arg-type]
    if not isinstance(anchors, torch.Tensor) or anchors.dim() != 2 or anchors.shape[1] != d:
        shape = tuple(anchors.shape) if isinstance(anchors, torch.Tensor) else type(anchors).__name__
        raise UserInputError(f"anchors {shape}: need a tensor of shape (n, {d}) (latents of this generator)")
    if not torch.isfinite(anchors).all():
        raise UserInputError("anchors contain NaN or infinite values; pass finite latents")
    if not radii or not all(math.isfinite(r) and r > 0 for r in radii):
        raise UserInputError(f"radius {list(radii)!r}: must be finite and > 0")
    if int(steps) != steps or steps < 1:
        raise UserInputError(f"steps {steps!r}: must be a positive integer (radii in the quotient bound)")
    if int(refine) != refine or refine < 0:
        raise UserInputError(f"refine {refine!r}: must be a non-negative integer (extra radii in the quotient bound)")
