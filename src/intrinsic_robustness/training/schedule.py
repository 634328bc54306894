"""The paper's training recipes (one builder per method, registered with it in ``objectives.METHODS``), the
learning-rate schedule and the per-batch eps ramp.

Recipes follow the paper's released training scripts: for 28x28 data, standard and certified training use
Wong & Kolter's small conv net with Adam (lr 1e-3, 60 epochs; batch 128, certified batch 50, eps 2.0
ramped up from 0.05 over the first third of training, 50 random projections), while PGD and TRADES use
``SmallCNN`` with SGD (lr 0.05, momentum 0.9, 100 epochs, batch 128, eps 3.0, 40 steps of 0.5, beta 6).
For 32x32 data every method but certified uses the larger conv net with SGD (lr 0.01, momentum 0.9, weight
decay 2e-4, 100 epochs, 10 attack steps). The learning rate is multiplied by 0.1, 0.01 and 0.001 from 50%,
75% and 90% of the epochs: the scripts' intent, without their accidental compounding to 1e-6.

Three stabilisers the paper's scripts lack, all off in the paper recipes and set per run (``fit``'s
``ramp``, ``warmup``, ``clip_norm``, ``clean_weight``): eps rises per *batch* (never in per-epoch jumps)
over a fraction ``ramp`` of all steps, the learning rate warms up linearly over a fraction ``warmup``, the
gradient norm is clipped to ``clip_norm``, and certified training may mix in clean cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

LR_MILESTONES = ((0.5, 0.1), (0.75, 0.01), (0.9, 0.001))
PAPER_RAMP = 1 / 3  # the paper's certified eps ramp: 20 of 60 epochs


@dataclass(frozen=True)
class Recipe:
    """Every setting of one training run; ``fit`` fills unset values from the paper's recipe."""

    method: str
    arch: str
    epochs: int
    batch_size: int
    optimizer: str  # "sgd" or "adam"
    lr: float
    momentum: float = 0.0
    weight_decay: float = 0.0
    eps: float | None = None
    num_steps: int = 0
    step_size: float = 0.0
    beta: float = 0.0
    eps_start: float = 0.0
    ramp: float = 0.0  # fraction of all training steps over which eps rises from eps_start to eps (0: none)
    warmup: float = 0.0  # fraction of all training steps of linear learning-rate warm-up (0: none)
    clip_norm: float | None = None  # clip the gradient's global L2 norm to this (None: no clipping)
    clean_weight: float = 0.0  # certified: weight of clean cross-entropy mixed into the robust loss
    proj: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_large_image(image_shape: Sequence[int]) -> bool:
    """True for images bigger than 28x28 (the paper's 32x32 ImageNet10 recipe), else the MNIST recipe."""
    return int(image_shape[1]) * int(image_shape[2]) > 28 * 28


def _sgd_large(method: str) -> Recipe:
    return Recipe(method, "big-cnn", 100, 128, "sgd", 0.01, momentum=0.9, weight_decay=2e-4)


def standard_recipe(image_shape: Sequence[int]) -> Recipe:
    """Cross-entropy: wk-small with Adam 1e-3, 60 epochs, batch 128 (big-cnn SGD on 32x32)."""
    if is_large_image(image_shape):
        return _sgd_large("standard")
    return Recipe("standard", "wk-small", 60, 128, "adam", 1e-3)


def _adversarial(method: str, image_shape: Sequence[int], beta: float) -> Recipe:
    if is_large_image(image_shape):
        base = _sgd_large(method)
        return Recipe(**{**asdict(base), "eps": 3.0, "step_size": 0.5, "num_steps": 10, "beta": beta})
    return Recipe(method, "small-cnn", 100, 128, "sgd", 0.05, momentum=0.9, eps=3.0, num_steps=40, step_size=0.5,
                  beta=beta)


def pgd_recipe(image_shape: Sequence[int]) -> Recipe:
    """Madry's PGD training: SmallCNN, SGD 0.05, 100 epochs, eps 3.0, 40 steps of 0.5 (32x32: big-cnn, 10)."""
    return _adversarial("pgd", image_shape, 0.0)


def trades_recipe(image_shape: Sequence[int]) -> Recipe:
    """TRADES: as PGD, with beta 6."""
    return _adversarial("trades", image_shape, 6.0)


def certified_recipe(image_shape: Sequence[int]) -> Recipe:
    """Wong & Kolter: wk-small, Adam 1e-3, 60 epochs, batch 50, eps 0.05 -> 2.0 over a third, 50 projections."""
    return Recipe("certified", "wk-small", 60, 50, "adam", 1e-3, eps=2.0, eps_start=0.05, ramp=PAPER_RAMP, proj=50)


def lr_at(epoch: int, epochs: int, lr: float) -> float:
    """Learning rate of (0-based) ``epoch``: lr, then lr*0.1, *0.01, *0.001 from 50%, 75%, 90% of epochs."""
    factor = 1.0
    for fraction, value in LR_MILESTONES:
        if epoch >= fraction * epochs:
            factor = value
    return lr * factor


def ramp_steps(recipe: Recipe, total_steps: int) -> int:
    """Number of optimizer steps the eps ramp takes: ``ceil(ramp * total_steps)`` (0 when there is none)."""
    if recipe.eps is None or recipe.ramp <= 0:
        return 0
    return max(1, math.ceil(recipe.ramp * total_steps))


def eps_at_step(step: int, total_steps: int, recipe: Recipe) -> float | None:
    """Training eps of (0-based) optimizer ``step``: linear from ``eps_start`` at step 0 to ``eps`` at step
    ``ramp_steps`` and after; a function of the global step only, so a resumed run continues the same ramp."""
    steps = ramp_steps(recipe, total_steps)
    if recipe.eps is None or steps == 0 or step >= steps:
        return recipe.eps
    return recipe.eps_start + (step / steps) * (recipe.eps - recipe.eps_start)


def eps_at(epoch: int, recipe: Recipe, batches_per_epoch: int = 1) -> float | None:
    """Training eps at the first batch of (0-based) ``epoch`` (``batches_per_epoch`` steps per epoch)."""
    return eps_at_step(epoch * batches_per_epoch, recipe.epochs * batches_per_epoch, recipe)


def warmup_factor(step: int, total_steps: int, recipe: Recipe) -> float:
    """Learning-rate multiplier of (0-based) ``step``: (step + 1) / W over the first W = ceil(warmup * total)
    steps, then 1."""
    if recipe.warmup <= 0:
        return 1.0
    steps = max(1, math.ceil(recipe.warmup * total_steps))
    return min(1.0, (step + 1) / steps)
