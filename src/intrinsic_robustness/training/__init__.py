"""Classifier training on generated data: standard, PGD adversarial training, TRADES and certified (L2)."""

from intrinsic_robustness.training.loop import fit, held_out_errors
from intrinsic_robustness.training.objectives import METHODS, pgd_l2, trades_perturb
from intrinsic_robustness.training.schedule import Recipe, eps_at, lr_at, paper_recipe

__all__ = [
    "METHODS", "Recipe", "eps_at", "fit", "held_out_errors", "lr_at",
    "paper_recipe", "pgd_l2", "trades_perturb",
]
