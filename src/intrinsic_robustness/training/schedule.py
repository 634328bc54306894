"""The paper's training recipes (per method and image size), the learning-rate schedule and the eps ramp.

Recipes follow the paper's released training scripts: for 28x28 data, standard and certified training use
Wong & Kolter's small conv net with Adam (lr 1e-3, 60 epochs; batch 128, certified batch 50, eps 2.0
ramped up from 0.05 over the first third of training, 50 random projections), while PGD and TRADES use
``SmallCNN`` with SGD (lr 0.05, momentum 0.9, 100 epochs, batch 128, eps 3.0, 40 steps of 0.5, beta 6).
For 32x32 data every method uses the larger conv net with SGD (lr 0.01, momentum 0.9, weight decay 2e-4,
100 epochs, 10 attack steps). The learning rate is multiplied by 0.1, 0.01 and 0.001 from 50%, 75% and 90%
of the epochs: the scripts' intent, without their accidental compounding to 1e-6.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

LR_MILESTONES = ((0.5, 0.1), (0.75, 0.01), (0.9, 0.001))


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
    ramp_epochs: int = 0
    proj: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_large_image(image_shape: Sequence[int]) -> bool:
    """True for images bigger than 28x28 (the paper's 32x32 ImageNet10 recipe), else the MNIST recipe."""
    return int(image_shape[1]) * int(image_shape[2]) > 28 * 28


def paper_recipe(method: str, image_shape: Sequence[int]) -> Recipe:
    """The paper's defaults for ``method`` on images of ``image_shape`` (C, H, W)."""
    from intrinsic_robustness.training.objectives import METHODS

    method = METHODS.canonical(method)
    attack = {"eps": 3.0, "step_size": 0.5, "num_steps": 40}
    if method == "certified":  # the paper's certified recipe is the same at every image size
        return Recipe(method, "wk-small", 60, 50, "adam", 1e-3, eps=2.0, eps_start=0.05, ramp_epochs=20, proj=50)
    if is_large_image(image_shape):
        base = Recipe(method, "big-cnn", 100, 128, "sgd", 0.01, momentum=0.9, weight_decay=2e-4)
        if method in ("pgd", "trades"):
            return replace(base, **{**attack, "num_steps": 10}, beta=6.0 if method == "trades" else 0.0)
        return base
    if method == "standard":
        return Recipe(method, "wk-small", 60, 128, "adam", 1e-3)
    return Recipe(method, "small-cnn", 100, 128, "sgd", 0.05, momentum=0.9, **attack,
                  beta=6.0 if method == "trades" else 0.0)


def lr_at(epoch: int, epochs: int, lr: float) -> float:
    """Learning rate of (0-based) ``epoch``: lr, then lr*0.1, *0.01, *0.001 from 50%, 75%, 90% of epochs."""
    factor = 1.0
    for fraction, value in LR_MILESTONES:
        if epoch >= fraction * epochs:
            factor = value
    return lr * factor


def eps_at(epoch: int, recipe: Recipe) -> float | None:
    """Training eps of (0-based) ``epoch``: linear from ``eps_start`` to ``eps`` over ``ramp_epochs``."""
    if recipe.eps is None or recipe.ramp_epochs <= 1 or epoch >= recipe.ramp_epochs - 1:
        return recipe.eps
    t = epoch / (recipe.ramp_epochs - 1)
    return recipe.eps_start + t * (recipe.eps - recipe.eps_start)


def scaled_ramp(recipe: Recipe, epochs: int) -> int:
    """Ramp length for a run of ``epochs``: the paper ramps over a third of training (20 of 60 epochs)."""
    if recipe.ramp_epochs <= 0:
        return 0
    paper_epochs = 60
    return max(1, round(recipe.ramp_epochs * epochs / paper_epochs))
