"""Training objectives sharing one loop: standard, PGD adversarial training, TRADES and certified (L2, [0,1]).

Inner maximisations differentiate with respect to the input only (``torch.autograd.grad``), run with the
model in eval mode and its parameters frozen, and then restore every module's mode and every parameter's
``requires_grad`` exactly, so no gradient reaches the weights and BatchNorm statistics never see the
adversarial search. The L2 geometry (normalised steps, projection, uniform random start) is ``threat.py``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.modes import frozen
from intrinsic_robustness.registry import Registry
from intrinsic_robustness.threat import clip_box, normalized_step, project_l2, uniform_ball
from intrinsic_robustness.training.schedule import (
    Recipe,
    certified_recipe,
    pgd_recipe,
    standard_recipe,
    trades_recipe,
)


def _ascend(model: nn.Module, x: torch.Tensor, start: torch.Tensor, eps: float, num_steps: int,
            step_size: float, loss_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """L2 projected gradient ascent of ``loss_of(logits)`` from ``start``, kept in the eps-ball and [0,1]."""
    x = x.detach()
    x_adv = clip_box(x + project_l2(start - x, eps)).detach()
    with frozen(model), torch.enable_grad():
        for _ in range(num_steps):
            x_adv.requires_grad_(True)
            loss = loss_of(model(x_adv))
            (grad,) = torch.autograd.grad(loss, [x_adv])
            step = x_adv.detach() + step_size * normalized_step(grad)
            x_adv = clip_box(x + project_l2(step - x, eps)).detach()
    return x_adv


def pgd_l2(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, num_steps: int, step_size: float,
           generator: torch.Generator | None = None, random_start: bool = True) -> torch.Tensor:
    """Madry's L2 PGD on cross-entropy: a uniform start in the eps-ball, normalised steps, projection."""
    start = x + uniform_ball(x.shape, eps, generator=generator, device=x.device, dtype=x.dtype) if random_start else x
    return _ascend(model, x, start, eps, num_steps, step_size, lambda logits: F.cross_entropy(logits, y))


def trades_perturb(model: nn.Module, x: torch.Tensor, eps: float, num_steps: int, step_size: float,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES' inner maximisation of KL(f(x) || f(x')) from x + 0.001 N(0, I)."""
    with frozen(model), torch.no_grad():
        p_clean = F.softmax(model(x), dim=1)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def kl(logits: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, dim=1), p_clean, reduction="sum")

    return _ascend(model, x, x + 0.001 * noise, eps, num_steps, step_size, kl)


def standard_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, eps: float | None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy on clean points."""
    return F.cross_entropy(model(x), y)


def pgd_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, eps: float | None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Cross-entropy on PGD points (Madry et al.)."""
    x_adv = pgd_l2(model, x, y, float(eps), recipe.num_steps, recipe.step_size, generator)
    return F.cross_entropy(model(x_adv), y)


def trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, eps: float | None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES: CE(f(x), y) + beta * KL(f(x) || f(x')) averaged over the batch."""
    x_adv = trades_perturb(model, x, float(eps), recipe.num_steps, recipe.step_size, generator)
    logits = model(x)
    kl = F.kl_div(F.log_softmax(model(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean")
    return F.cross_entropy(logits, y) + recipe.beta * kl


def certified_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, eps: float | None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Wong & Kolter's robust cross-entropy on the LP-relaxation dual bound (L2, random projections), mixed
    with ``recipe.clean_weight`` of clean cross-entropy (0, the paper's, is the robust loss alone)."""
    from intrinsic_robustness.certify import dual_bound_loss

    robust = dual_bound_loss(model, x, y, float(eps), proj=recipe.proj, generator=generator)
    if recipe.clean_weight <= 0:
        return robust
    return recipe.clean_weight * F.cross_entropy(model(x), y) + (1 - recipe.clean_weight) * robust


# The training methods: a new one is an objective function above and one registration here, which carries
# every fact about it: ``recipe`` (image shape -> the paper's Recipe, see ``schedule``), ``adversarial``
# (trains against an eps: the run has a training eps) and ``certified`` (its models get certified radii: the
# architecture must admit the dual bound, and evaluation reports certified accuracy).
METHODS: Registry[Callable[..., torch.Tensor]] = Registry("training method")
METHODS.register("standard", standard_loss, label="standard", adversarial=False, certified=False,
                 recipe=standard_recipe)
METHODS.register("pgd", pgd_loss, label="PGD adversarial training", adversarial=True, certified=False,
                 recipe=pgd_recipe)
METHODS.register("trades", trades_loss, label="TRADES", adversarial=True, certified=False, recipe=trades_recipe)
METHODS.register("certified", certified_loss, label="certified (LP dual)", adversarial=True, certified=True,
                 recipe=certified_recipe)


def paper_recipe(method: str, image_shape: Sequence[int]) -> Recipe:
    """The paper's defaults for ``method`` (a name or alias) on images of ``image_shape`` (C, H, W)."""
    name = METHODS.canonical(method)
    return replace(METHODS.info(name)["recipe"](image_shape), method=name)


def is_certified_method(method: object) -> bool:
    """True when ``method`` names a registered method whose models carry certificates (e.g. ``certified``)."""
    return isinstance(method, str) and method in METHODS and bool(METHODS.info(method).get("certified"))
