"""Extract ``z -> decode(z, y)`` (class y fixed) as a chain of affine blocks and elementwise activations.

``decode`` is run once on a concrete latent under a :class:`~torch.overrides.TorchFunctionMode` that records
every torch call touching a z-dependent tensor (module calls reach it as ``F.linear``, ``F.conv2d``,
``F.batch_norm``...). Python control flow and shape arithmetic run concretely, the class input is a
constant, so the one-hot vector becomes a bias. The chain is checked against ``decode`` on random latents.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.certified.ops import CONVERTERS, METADATA, Call, Op, Unsupported
from intrinsic_robustness.lipschitz.certified.pieces import Activation, Block, Piece, Shape
from intrinsic_robustness.runtime import derive_seed, make_generator

SUPPORTED = ("Linear, Conv1d/2d, ConvTranspose1d/2d, BatchNorm (eval), ReLU, LeakyReLU, Tanh, Sigmoid, "
             "Hardtanh/ReLU6/clamp, reshape/flatten, concatenation with constants, constant add/multiply/divide, "
             "nearest/area/bilinear resizing, average pooling, padding, eval-mode dropout")


SHAPE_ONLY = frozenset({"zeros_like", "ones_like", "empty_like", "full_like", "new_zeros", "new_ones", "new_empty",
                        "new_full", "new_tensor"})


@dataclass
class Chain:
    """decode(., y) = blocks[L] o act[L-1] o blocks[L-1] o ... o act[0] o blocks[0] on flat float64 vectors."""

    blocks: list[Block]
    acts: list[Activation]
    latent_dim: int
    label: int
    output_shape: Shape

    def forward(self, z: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pre-activations of every activation layer and the flat output, for a batch of latents."""
        h = z.to(torch.float64)
        pre = []
        for block, act in zip(self.blocks, self.acts, strict=False):
            p = block.affine(h)
            pre.append(p)
            h = act.value(p)
        return pre, self.blocks[-1].affine(h)

    def same_linear_part(self, other: Chain) -> bool:
        """True when the two chains differ at most in their biases (e.g. two classes of an ACGAN)."""
        if len(self.blocks) != len(other.blocks) or self.acts != other.acts:
            return False
        return all(_same_piece(a, b) for x, y in zip(self.blocks, other.blocks, strict=True)
                   for a, b in zip(x.pieces, y.pieces, strict=True)) and all(
            len(x.pieces) == len(y.pieces) for x, y in zip(self.blocks, other.blocks, strict=True))


def _same_piece(a: Piece, b: Piece) -> bool:
    if type(a) is not type(b) or a.in_shape != b.in_shape or a.out_shape != b.out_shape:
        return False
    for key in ("weight", "scale"):
        if hasattr(a, key) and not torch.equal(getattr(a, key), getattr(b, key)):
            return False
    return getattr(a, "func", None) is getattr(b, "func", None) and getattr(a, "options", None) == getattr(
        b, "options", None)


class _Recorder(TorchFunctionMode):
    """Records the z-dependent calls of one decode; refuses branching, products and unknown operations."""

    def __init__(self, z: torch.Tensor, where: list[str]) -> None:
        super().__init__()
        self.ids: dict[int, int] = {id(z): 0}
        self.alive: list[torch.Tensor] = [z]  # keeps tracked tensors alive so their ids stay unique
        self.head = 0
        self.ops: list[Op] = []
        self.where = where

    def tracked(self, t: Any) -> bool:
        return isinstance(t, torch.Tensor) and id(t) in self.ids

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        inputs = {id(t): t for t in _tensors(args) + _tensors(list(kwargs.values())) if self.tracked(t)}
        if not inputs:
            return func(*args, **kwargs)
        name = _name(func)
        try:
            out = func(*args, **kwargs)
        except Exception as exc:  # e.g. batch statistics on a single example
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise self.refuse(name, f"it fails on one example: {first}") from None
        if name in SHAPE_ONLY or (name in ("to", "type_as") and not self.tracked(args[0] if args else None)):
            return out  # uses only the dtype/device/shape of the z-dependent tensor
        if not isinstance(out, torch.Tensor):
            if name in METADATA:
                return out
            raise self.refuse(name, "it leaves the tensor world")
        if len(inputs) > 1:
            raise self.refuse(name, "it combines two z-dependent tensors (skip connection or product)")
        x = next(iter(inputs.values()))
        if self.ids[id(x)] != self.head:
            raise self.refuse(name, "it reuses an earlier z-dependent tensor (branching)")
        self._record(name, func, args, kwargs, x, out)
        return out

    def _record(self, name: str, func: Any, args: Any, kwargs: dict[str, Any], x: torch.Tensor,
                out: torch.Tensor) -> None:
        if name not in CONVERTERS:
            raise self.refuse(name, "unknown operation")
        if x.shape[:1] != (1,) or out.dim() < 1 or out.shape[0] != 1:
            raise self.refuse(name, "it does not keep the batch axis first")
        try:
            op = CONVERTERS[name](Call(name, func, args, kwargs, x, out, self.tracked))
        except Unsupported as exc:
            raise self.refuse(name, str(exc)) from None
        self.ops.append(op)
        self.head = len(self.ops)
        self.ids[id(out)] = self.head
        self.alive.append(out)

    def refuse(self, name: str, why: str) -> UserInputError:
        place = f"layer {self.where[-1]}" if self.where else "decode"
        return UserInputError(f"certified Lipschitz: operation {name} in {place} is not supported ({why}); "
                              f"supported: {SUPPORTED}")


def _tensors(items: Any) -> list[torch.Tensor]:
    found: list[torch.Tensor] = []
    for item in items:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, list | tuple):
            found.extend(_tensors(item))
    return found


def _name(func: Any) -> str:
    name = getattr(func, "__name__", repr(func))
    if name in ("__get__", "__set__"):
        return str(getattr(getattr(func, "__self__", None), "__name__", name))
    return str(name)


@contextmanager
def _module_stack(gen: nn.Module) -> Iterator[list[str]]:
    """A live list of the modules being run (innermost last), as one-line descriptions."""
    stack: list[str] = []
    handles = []

    def pop(*_: Any) -> None:
        if stack:
            stack.pop()

    for path, module in gen.named_modules():
        label = f"{type(module).__name__}({module.extra_repr()}) at '{path or '<root>'}'"
        handles.append(module.register_forward_pre_hook(lambda *_, label=label: stack.append(label)))
        handles.append(module.register_forward_hook(pop))
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def trace_ops(gen: nn.Module, label: int, device: torch.device) -> tuple[list[Op], Shape]:
    """The recorded operations of decode(., label) (gen must already be in eval mode) and decode's shape."""
    refusal = getattr(gen, "certified_refusal", None)  # a generator may say why no chain can describe it
    if isinstance(refusal, str) and refusal:
        raise UserInputError(f"certified Lipschitz: {refusal}")
    dtype = next((p.dtype for p in gen.parameters()), torch.float32)
    z = torch.zeros(1, int(gen.latent_dim), dtype=dtype, device=device)  # type: ignore[arg-type]
    y = torch.full((1,), int(label), dtype=torch.long, device=device)
    with _module_stack(gen) as where, torch.no_grad():
        recorder = _Recorder(z, where)
        with recorder:
            out = gen.decode(z, y)  # type: ignore[operator]
    if not isinstance(out, torch.Tensor) or not recorder.tracked(out):
        raise UserInputError("certified Lipschitz: decode's output does not depend on z through operations the "
                             f"tracer can follow; supported: {SUPPORTED}")
    if recorder.ids[id(out)] != recorder.head:
        raise UserInputError("certified Lipschitz: decode returns an earlier z-dependent tensor (branching)")
    return recorder.ops, tuple(int(s) for s in out.shape[1:])


def build_chain(ops: list[Op], latent_dim: int, label: int, output_shape: Shape) -> Chain:
    """Group the operations into affine blocks separated by activations."""
    blocks, acts = [], []
    pieces: list[Piece] = []
    shape: Shape = (latent_dim,)
    start = shape
    for op in ops:
        if isinstance(op, Activation):
            blocks.append(Block(pieces, start, shape))
            acts.append(op)
            pieces, start = [], shape
        else:
            pieces.append(op)
            shape = op.out_shape
    blocks.append(Block(pieces, start, shape))
    return Chain(blocks, acts, latent_dim, label, output_shape)


def extract_chain(gen: nn.Module, label: int, device: str | torch.device = "cpu", check: int = 4) -> Chain:
    """The chain of decode(., label), verified on ``check`` random latents (gen in eval mode, on ``device``)."""
    device = torch.device(device)
    ops, shape = trace_ops(gen, label, device)
    chain = build_chain(ops, int(gen.latent_dim), int(label), shape)  # type: ignore[arg-type]
    if check:
        _verify(gen, chain, check, device)
    return chain


def _verify(gen: nn.Module, chain: Chain, n: int, device: torch.device) -> None:
    """The chain must reproduce decode (up to float32 rounding) on seeded random latents."""
    rng = make_generator(derive_seed(0, "certified-verify", chain.label))
    z = torch.randn(n, chain.latent_dim, generator=rng).to(device)
    dtype = next((p.dtype for p in gen.parameters()), torch.float32)
    with torch.no_grad():
        want = gen.decode(z.to(dtype), torch.full((n,), chain.label, device=device)).double().flatten(1)  # type: ignore[operator]
        _, got = chain.forward(z.double())
    err = float((want - got).abs().max())
    scale = float(want.abs().max()) + 1.0
    if not err <= 1e-4 * scale:
        raise UserInputError(f"certified Lipschitz: the extracted layer chain differs from decode by {err:.3g}; "
                             "decode uses an operation the tracer cannot see (custom autograd, numpy, in-place "
                             "writes through .data)")
