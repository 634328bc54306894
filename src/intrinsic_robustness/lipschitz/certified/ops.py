"""Turn one recorded torch call on a z-dependent tensor into a :class:`Piece` or an :class:`Activation`.

Each converter gets the call (name, positional and keyword arguments), the tracked input ``x`` and the
concrete output ``out`` (both with a batch axis of size 1), and returns the per-example operation or raises
:class:`Unsupported` with a short reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from intrinsic_robustness.lipschitz.certified.pieces import (
    Activation,
    ConvPiece,
    DensePiece,
    EmbedPiece,
    NonnegPiece,
    Piece,
    ReshapePiece,
    ScalePiece,
)

Op = Piece | Activation


class Unsupported(Exception):
    """An operation the certified bounds cannot handle (the message says why)."""


class Call:
    """One recorded call: ``args``/``kwargs`` as given, ``x`` the tracked input, ``out`` the output."""

    def __init__(self, name: str, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any],
                 x: torch.Tensor, out: torch.Tensor, is_tracked: Callable[[Any], bool]) -> None:
        self.name, self.func, self.args, self.kwargs = name, func, tuple(args), dict(kwargs)
        self.x, self.out, self.is_tracked = x, out, is_tracked
        self.in_shape = tuple(int(s) for s in x.shape[1:])
        self.out_shape = tuple(int(s) for s in out.shape[1:])

    def bind(self, names: Sequence[str], defaults: dict[str, Any]) -> dict[str, Any]:
        """Positional and keyword arguments by name (like inspect.signature.bind, for known torch signatures)."""
        bound = dict(defaults)
        bound.update(zip(names, self.args, strict=False))
        bound.update(self.kwargs)
        return bound


def const(t: Any, like: torch.Tensor) -> torch.Tensor:
    """A constant as float64 on the working device."""
    return torch.as_tensor(t).detach().to(device=like.device, dtype=torch.float64)


def per_example(t: Any, call: Call) -> torch.Tensor:
    """A constant broadcast to the output's shape, with the batch axis (size 1) dropped."""
    full = torch.broadcast_to(const(t, call.x), tuple(call.out.shape))
    return full[0].clone()


CONV_NAMES = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
CONVT_NAMES = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")


def _conv(call: Call) -> Op:
    transposed = call.name.startswith("conv_transpose")
    names = CONVT_NAMES if transposed else CONV_NAMES
    bound = call.bind(names, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1,
                              "output_padding": 0})
    if call.is_tracked(bound["weight"]):
        raise Unsupported("its weight depends on z")
    options = {k: bound[k] for k in names[3:]}
    bias = None if bound["bias"] is None else per_example(_channel_view(bound["bias"], call), call)
    return ConvPiece("conv_transpose" if transposed else "conv", call.in_shape, call.out_shape, bias,
                     weight=const(bound["weight"], call.x), func=call.func, options=options, transposed=transposed)


def _channel_view(v: Any, call: Call) -> torch.Tensor:
    """A per-channel vector shaped to broadcast against (1, C, *spatial)."""
    return const(v, call.x).reshape(1, -1, *([1] * (len(call.out_shape) - 1)))


def _linear(call: Call) -> Op:
    bound = call.bind(("input", "weight", "bias"), {"bias": None})
    bias = None if bound["bias"] is None else per_example(bound["bias"], call)
    return DensePiece("linear", call.in_shape, call.out_shape, bias, weight=const(bound["weight"], call.x))


def _batch_norm(call: Call) -> Op:
    names = ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps")
    b = call.bind(names, {"weight": None, "bias": None, "training": False, "eps": 1e-5})
    if b["training"] or b["running_mean"] is None or b["running_var"] is None:
        raise Unsupported("batch statistics are used (training mode or track_running_stats=False)")
    scale = 1.0 / torch.sqrt(const(b["running_var"], call.x) + float(b["eps"]))
    if b["weight"] is not None:
        scale = scale * const(b["weight"], call.x)
    shift = -const(b["running_mean"], call.x) * scale
    if b["bias"] is not None:
        shift = shift + const(b["bias"], call.x)
    return ScalePiece("batch_norm", call.in_shape, call.out_shape, per_example(_channel_view(shift, call), call),
                      scale=_channel_view(scale, call)[0])


def _arith(call: Call) -> Op:
    """x + c, c + x, x - c, c - x, x * c, x / c, -x (also in-place and reflected forms)."""
    base = call.name.strip("_").removesuffix("_")
    base = {"iadd": "add", "radd": "add", "isub": "sub", "imul": "mul", "rmul": "mul", "itruediv": "div",
            "truediv": "div", "rsub": "sub", "true_divide": "div", "divide": "div", "multiply": "mul", "subtract": "sub"
            }.get(base, base)
    if call.out.shape != call.x.shape:
        raise Unsupported("it broadcasts the z-dependent tensor to a larger shape")
    if base == "neg":
        return ScalePiece("scale", call.in_shape, call.out_shape, None, scale=torch.tensor(-1.0).to(call.x.device,
                                                                                                  torch.float64))
    first_tracked = call.is_tracked(call.args[0])
    other = call.args[1] if first_tracked else call.args[0]
    if len(call.args) > 1 and call.is_tracked(call.args[1]) and first_tracked:
        raise Unsupported("it combines two z-dependent tensors")
    if call.name in ("__rsub__", "rsub"):
        first_tracked = False  # x.__rsub__(c) computes c - x
    alpha = float(call.kwargs.get("alpha", 1.0))
    if base in ("add", "sub"):
        sign = -1.0 if base == "sub" else 1.0
        x_coef, c_coef = (1.0, sign * alpha) if first_tracked else (sign * alpha, 1.0)
        bias = per_example(const(other, call.x) * c_coef, call)
        scale = torch.tensor(x_coef, dtype=torch.float64, device=call.x.device)
        return ScalePiece("shift", call.in_shape, call.out_shape, bias, scale=scale)
    if base == "mul":
        return ScalePiece("scale", call.in_shape, call.out_shape, None, scale=_scale(other, call))
    if base == "div" and first_tracked and call.kwargs.get("rounding_mode") is None:
        return ScalePiece("scale", call.in_shape, call.out_shape, None, scale=1.0 / _scale(other, call))
    raise Unsupported("it is not affine in z")


def _scale(other: Any, call: Call) -> torch.Tensor:
    c = const(other, call.x)
    return c if c.dim() == 0 else per_example(c, call)


def _matmul(call: Call) -> Op:
    if not call.is_tracked(call.args[0]) or call.is_tracked(call.args[1]):
        raise Unsupported("only z-dependent @ constant matrix is supported")
    m = const(call.args[1], call.x)
    if m.dim() != 2:
        raise Unsupported("the constant operand must be a matrix")
    return DensePiece("matmul", call.in_shape, call.out_shape, None, weight=m.T.contiguous())


def _cat(call: Call) -> Op:
    tensors = list(call.args[0]) if call.args else list(call.kwargs["tensors"])
    dim = call.kwargs.get("dim", call.args[1] if len(call.args) > 1 else 0)
    dim = int(dim) % call.out.dim()
    tracked = [i for i, t in enumerate(tensors) if call.is_tracked(t)]
    if len(tracked) != 1 or dim == 0:
        raise Unsupported("concatenation must join one z-dependent tensor with constants along a feature axis")
    start = sum(int(t.shape[dim]) for t in tensors[:tracked[0]])
    parts = [torch.zeros_like(t, dtype=torch.float64) if i == tracked[0] else const(t, call.x)
             for i, t in enumerate(tensors)]
    bias = torch.cat(parts, dim=dim)[0]
    return EmbedPiece("concat", call.in_shape, call.out_shape, bias, dim=dim - 1, start=start)


def _reshape(call: Call) -> Op:
    if call.name in ("to", "type", "float", "double", "half", "bfloat16") and not call.out.is_floating_point():
        raise Unsupported("it converts to a non-floating type")
    if call.name == "dropout" and call.bind(("input", "p", "training"), {"training": True})["training"]:
        raise Unsupported("dropout is active (training mode)")
    if math.prod(call.in_shape) != math.prod(call.out_shape):
        raise Unsupported("it changes the number of elements per example")
    return ReshapePiece("reshape", call.in_shape, call.out_shape)


def _resample(call: Call) -> Op:
    """Resizing, average pooling and padding: linear maps with non-negative matrices."""
    rest = dict(call.kwargs)
    extra = call.args[1:]
    bias = None
    if call.name == "interpolate":
        mode = call.bind(("input", "size", "scale_factor", "mode"), {"mode": "nearest"})["mode"]
        if mode not in ("nearest", "nearest-exact", "area", "linear", "bilinear", "trilinear"):
            raise Unsupported(f"interpolation mode {mode!r} has negative weights")
    if call.name == "pad":
        b = call.bind(("input", "pad", "mode", "value"), {"mode": "constant", "value": None})
        if b["mode"] == "constant":
            value = 0.0 if b["value"] is None else float(b["value"])
            rest, extra = {"pad": b["pad"], "mode": "constant", "value": 0.0}, ()
            if value:
                zeros = torch.zeros((1, *call.in_shape), dtype=torch.float64, device=call.x.device)
                bias = F.pad(zeros, b["pad"], "constant", value)[0]
    return NonnegPiece(call.name, call.in_shape, call.out_shape, bias, func=_bind_rest(call.func, extra, rest))


def _bind_rest(func: Callable[..., Any], extra: tuple[Any, ...], rest: dict[str, Any]) -> Callable[..., Any]:
    """x -> func(x, *extra, **rest): the recorded call with a new input."""
    return lambda x: func(x, *extra, **rest)


def _activation(call: Call) -> Op:
    if call.out.shape != call.x.shape:
        raise Unsupported("it changes the shape")
    base = call.name.removesuffix("_")
    if base in ("tanh", "sigmoid"):
        return Activation(base, name=base)
    if base == "relu":
        return Activation("piecewise", (0.0,), (0.0, 1.0), "relu")
    if base == "leaky_relu":
        slope = float(call.bind(("input", "negative_slope"), {"negative_slope": 0.01})["negative_slope"])
        if slope < 0:
            raise Unsupported("a negative slope makes it non-monotone")
        return Activation("piecewise", (0.0,), (slope, 1.0), "leaky_relu")
    if base == "hardtanh":
        b = call.bind(("input", "min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0})
        return _clamp(b["min_val"], b["max_val"])
    if base in ("clamp_min", "clamp_max"):
        value = call.args[1] if len(call.args) > 1 else call.kwargs.get("min", call.kwargs.get("max"))
        return _clamp(value, None) if base == "clamp_min" else _clamp(None, value)
    b = call.bind(("input", "min", "max"), {"min": None, "max": None})
    return _clamp(b["min"], b["max"])


def _clamp(lo: Any, hi: Any) -> Op:
    if isinstance(lo, torch.Tensor) and lo.numel() == 1:
        lo = float(lo)
    if isinstance(hi, torch.Tensor) and hi.numel() == 1:
        hi = float(hi)
    if isinstance(lo, torch.Tensor) or isinstance(hi, torch.Tensor):
        raise Unsupported("only scalar clamp bounds are supported")
    if lo is not None and hi is not None:
        if float(lo) >= float(hi):
            raise Unsupported("its lower bound is not below its upper bound")
        return Activation("piecewise", (float(lo), float(hi)), (0.0, 1.0, 0.0), "clamp")
    if lo is not None:
        return Activation("piecewise", (float(lo),), (0.0, 1.0), "clamp")
    if hi is not None:
        return Activation("piecewise", (float(hi),), (1.0, 0.0), "clamp")
    raise Unsupported("clamp without bounds")


def _names(converter: Callable[[Call], Op], *names: str) -> dict[str, Callable[[Call], Op]]:
    return dict.fromkeys(names, converter)


CONVERTERS: dict[str, Callable[[Call], Op]] = {
    **_names(_conv, "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"),
    **_names(_linear, "linear"),
    **_names(_batch_norm, "batch_norm"),
    **_names(_arith, "add", "add_", "__add__", "__radd__", "__iadd__", "sub", "sub_", "__sub__", "__rsub__",
             "rsub", "__isub__", "subtract", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "multiply", "div",
             "div_", "__truediv__", "__itruediv__", "true_divide", "divide", "neg", "neg_", "__neg__"),
    **_names(_matmul, "matmul", "__matmul__", "mm"),
    **_names(_cat, "cat", "concat", "concatenate"),
    **_names(_reshape, "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous", "clone",
             "to", "type", "float", "double", "view_as", "reshape_as", "dropout"),
    **_names(_resample, "interpolate", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
             "pad"),
    **_names(_activation, "relu", "relu_", "leaky_relu", "leaky_relu_", "tanh", "tanh_", "sigmoid", "sigmoid_",
             "clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "clamp_max_", "hardtanh",
             "hardtanh_", "relu6"),
}

# Calls on a z-dependent tensor that return metadata, not data.
METADATA = frozenset({"shape", "size", "dim", "ndim", "dtype", "device", "numel", "is_contiguous", "requires_grad",
                      "is_floating_point", "layout", "is_cuda", "grad_fn", "stride", "__len__", "ndimension",
                      "element_size", "nelement", "get_device"})
