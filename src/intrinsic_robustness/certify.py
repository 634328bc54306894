"""Certified L2 robustness via Wong & Kolter's LP-relaxation dual network (the ``convex_adversarial`` package).

:func:`certified_radius` gives, per example, a radius r such that the dual bound proves every point within L2
distance r of x (in all of R^n, so in particular inside [0,1]^n) keeps label y: a lower bound on the minimal
adversarial norm, 0 where x is misclassified. It bisects over eps with the exact (projection-free) ``l2``
dual; each reported radius was itself certified, so the answer stays sound even if the bound is not monotone
in eps. Training uses the same dual with random projections (``l2_normal``), an estimate, never a certificate.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import misclassified

_SUPPORTED = (nn.Conv2d, nn.Linear, nn.ReLU, nn.Flatten)


def check_certifiable(model: nn.Module, image_shape: Sequence[int] | None = None) -> nn.Sequential:
    """The dual network needs an ``nn.Sequential`` of Conv2d, Linear, ReLU and Flatten ending in Linear.

    With ``image_shape`` it also checks the sizes: convex_adversarial's dual of a strided convolution (a
    transposed convolution) only matches its input when the stride divides the padded input exactly.
    """
    if not isinstance(model, nn.Sequential):
        raise UserInputError(f"certified: {type(model).__name__} is not an nn.Sequential; use --arch wk-small "
                             "(or a Sequential of Conv2d/Linear/ReLU/Flatten layers)")
    for layer in model:
        if not isinstance(layer, _SUPPORTED):
            raise UserInputError(f"certified: layer {type(layer).__name__} has no dual bound; use only "
                                 "Conv2d, Linear, ReLU and Flatten (e.g. --arch wk-small)")
    if len(model) == 0 or not isinstance(model[-1], nn.Linear):
        raise UserInputError("certified: the network must end with an nn.Linear layer giving the logits")
    if image_shape is not None:
        _check_conv_sizes(model, tuple(int(v) for v in image_shape))
    return model


def _check_conv_sizes(model: nn.Sequential, image_shape: tuple[int, ...]) -> None:
    """Refuse image sizes whose strided convolutions leave a remainder (the dual network fails on them)."""
    if _conv_sizes_fit(model, image_shape[-2:]):
        return
    works = [n for n in range(1, 65) if _conv_sizes_fit(model, (n, n))]
    listed = ", ".join(f"{n}x{n}" for n in works[:8]) + (", ..." if len(works) > 8 else "")
    raise UserInputError(
        f"certified: images {'x'.join(map(str, image_shape))} do not fit this network's strided convolutions "
        f"exactly, which the dual bound needs; sizes that work: {listed or 'none up to 64x64'} (resize the "
        "images, or use --arch mlp-tiny / linear)")


def _conv_sizes_fit(model: nn.Sequential, hw: Sequence[int]) -> bool:
    """Whether every Conv2d's stride divides its padded input minus the kernel (output sizes exact)."""
    size = [int(v) for v in hw]
    for layer in model:
        if not isinstance(layer, nn.Conv2d) or isinstance(layer.padding, str):
            continue
        for d in range(2):
            span = size[d] + 2 * layer.padding[d] - layer.kernel_size[d]
            if span < 0 or span % layer.stride[d]:
                return False
            size[d] = span // layer.stride[d] + 1
    return True


@contextlib.contextmanager
def _rng_from(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Seed the global RNG (which convex_adversarial's projections draw from) from ``generator``, then restore."""
    if generator is None:
        yield
        return
    from intrinsic_robustness.runtime import seeded

    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with seeded(seed, device):
        yield


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence convex_adversarial's warning for layers whose ReLUs are all stable (harmless)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="ReLU projection has no origin crossing")
        yield


def dual_bound_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, proj: int | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Robust cross-entropy on the dual bound at L2 radius ``eps`` (random projections when ``proj`` is set)."""
    from convex_adversarial import robust_loss

    net = check_certifiable(model)
    # convex_adversarial projects only inputs larger than ``proj``; smaller ones get the exact l2 dual.
    use_proj = proj is not None and x[0].numel() > int(proj)
    kwargs = {"proj": int(proj), "norm_type": "l2_normal"} if use_proj else {"norm_type": "l2"}
    with _rng_from(generator, x.device), _quiet():
        loss, _ = robust_loss(net, eps, x, y, bounded_input=True, **kwargs)
    return loss


def worst_margin_bound(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor
                       ) -> torch.Tensor:
    """Per example, an upper bound over the eps-ball of max_{j != y} (logit_j - logit_y); < 0 means certified."""
    from convex_adversarial import RobustBounds

    net = check_certifiable(model)
    eps_t = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    if eps_t.ndim == 0:
        eps_t = eps_t.expand(x.shape[0]).contiguous()
    with torch.no_grad(), _quiet():
        f = RobustBounds(net, eps_t, norm_type="l2")(x, y)
    f = f.clone()
    f[torch.arange(len(y), device=y.device), y] = -math.inf
    return f.max(dim=1).values


def _radius_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, upper: float, tol: float,
                  start: float) -> torch.Tensor:
    """Doubling then bisection of the certified radius on one batch; ``lo`` only ever takes certified values."""
    with torch.no_grad():
        correct = ~misclassified(model(x), y)  # NaN/inf logits: not correct, so certified nowhere
    lo = torch.zeros(len(y), dtype=x.dtype, device=x.device)
    hi = torch.where(correct, torch.full_like(lo, min(start, upper)), lo)
    growing = correct.clone()
    while growing.any():  # double until the bound fails (or the box diameter is reached)
        ok = worst_margin_bound(model, x, y, hi) < 0
        grow = growing & ok
        lo = torch.where(grow, hi, lo)
        growing = grow & (hi < upper)
        hi = torch.where(growing, (2 * hi).clamp(max=upper), hi)
    while bool(((hi - lo) > tol).any()):
        mid = (lo + hi) / 2
        ok = worst_margin_bound(model, x, y, mid) < 0
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    return torch.where(correct, lo, torch.zeros_like(lo))


def certified_radius(model: nn.Module, x: torch.Tensor, y: torch.Tensor, max_radius: float | None = None,
                     tol: float = 0.01, batch_size: int = 16, start: float = 0.25) -> torch.Tensor:
    """Per-example certified L2 radius (a lower bound on the minimal adversarial norm; 0 if misclassified).

    The search doubles from ``start`` up to ``max_radius`` (default sqrt(n): no two points of [0,1]^n are
    farther apart), then bisects to absolute precision ``tol``. The model runs in eval mode; its mode is
    restored afterwards.
    """
    from intrinsic_robustness.modes import frozen

    if x.ndim < 2 or len(x) != len(y):
        raise UserInputError(f"certified_radius: x {tuple(x.shape)} and y {tuple(y.shape)} need the same batch size")
    if tol <= 0:
        raise UserInputError(f"certified_radius: tol {tol} must be positive")
    upper = float(max_radius) if max_radius is not None else math.sqrt(x[0].numel())
    if upper <= 0:
        raise UserInputError(f"certified_radius: max_radius {max_radius} must be positive")
    out = []
    with frozen(model):
        for i in range(0, len(y), batch_size):
            xb, yb = x[i:i + batch_size], y[i:i + batch_size].long()
            out.append(_radius_batch(model, xb, yb, upper, tol, start))
    return torch.cat(out) if out else torch.zeros(0, dtype=x.dtype, device=x.device)
