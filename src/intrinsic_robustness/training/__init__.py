"""Classifier training on generated or real data: standard, PGD adversarial training, TRADES and certified (L2)."""

from intrinsic_robustness.training.loop import fit, held_out_errors
from intrinsic_robustness.training.objectives import METHODS, is_certified_method, paper_recipe, pgd_l2, trades_perturb
from intrinsic_robustness.training.schedule import Recipe, eps_at, eps_at_step, lr_at, warmup_factor

__all__ = [
    "METHODS", "Recipe", "eps_at", "eps_at_step", "fit", "held_out_errors", "is_certified_method", "lr_at",
    "paper_recipe", "pgd_l2", "trades_perturb", "warmup_factor",
]
