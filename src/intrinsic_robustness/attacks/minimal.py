"""Minimum-norm unconstrained L2 attack (an FMN-style adaptive norm constraint) with a final line search.

Each step descends the margin (true logit minus the best other, or minus a target's logit) with a
normalised gradient step, projects onto a ball of radius ``eps_k`` and clips to [0, 1]. The radius adapts
per example: before any adversarial point is found it jumps just past the first-order estimate of the
boundary, ``(||delta|| + margin / ||grad||) (1 + gamma_k)``; afterwards it shrinks by (1 - gamma_k) while
adversarial and grows by (1 + gamma_k) otherwise, never above the best norm found. Step size and gamma
decay on a cosine schedule.
Optional targeted runs against the most likely other classes handle multi-class boundaries that the
untargeted margin would miss. A bisection along the segment from x to the best point ends the attack.
"""

from __future__ import annotations

import torch
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext, cosine_schedule, margin
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import l2_norm, normalized_step, project_l2


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def line_search(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, found: torch.Tensor,
                steps: int = 10) -> torch.Tensor:
    """Bisection on t in [0, 1] for the closest misclassified point x + t (x_adv - x) (only where found)."""
    lo = torch.zeros(len(x), device=x.device)
    hi = torch.ones(len(x), device=x.device)
    direction = x_adv - x
    with torch.no_grad():
        for _ in range(steps):
            mid = (lo + hi) / 2
            wrong = model(x + _expand(mid, x) * direction).argmax(dim=1) != y
            hi = torch.where(wrong & found, mid, hi)
            lo = torch.where(wrong & found, lo, mid)
    return torch.where(_expand(found, x), x + _expand(hi, x) * direction, x_adv)


class MinimalNorm(Attack):
    """Per-example minimal L2 adversarial norms without a fixed budget (``eps`` at call time is ignored)."""

    name = "fmn"

    def __init__(self, num_steps: int = 100, step_size: float = 1.0, final_step_size: float = 0.01,
                 gamma: float = 0.05, final_gamma: float = 0.001, num_targets: int = 3,
                 line_search_steps: int = 10) -> None:
        if num_steps < 1 or step_size <= 0 or not 0 < gamma < 1 or num_targets < 0:
            raise UserInputError(f"fmn: num_steps={num_steps}, step_size={step_size}, gamma={gamma}, "
                                 f"num_targets={num_targets}; need positive steps and 0 < gamma < 1")
        self.num_steps, self.step_size, self.final_step_size = int(num_steps), float(step_size), final_step_size
        self.gamma, self.final_gamma = float(gamma), float(final_gamma)
        self.num_targets, self.line_search_steps = int(num_targets), int(line_search_steps)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        with torch.no_grad():
            logits = model(x)
        order = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)
        targets: list[torch.Tensor | None] = [None]
        targets += [order[:, k] for k in range(min(self.num_targets, logits.shape[1] - 1))]
        best = x.clone()
        best_norm = torch.full((len(x),), float("inf"), device=x.device)
        for target in targets:
            adv, norm = self._run(model, x, y, target)
            better = norm < best_norm
            best[better], best_norm[better] = adv[better], norm[better]
        found = torch.isfinite(best_norm)
        if self.line_search_steps and found.any():
            best = line_search(model, x, y, best, found, self.line_search_steps)
        return best

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One adaptive-radius run (untargeted when ``target`` is None)."""
        n = len(x)
        delta = torch.zeros_like(x)
        radius = torch.full((n,), float("inf"), device=x.device)
        best, best_norm = x.clone(), torch.full((n,), float("inf"), device=x.device)
        for k in range(self.num_steps):
            gamma = cosine_schedule(self.gamma, self.final_gamma, k, self.num_steps)
            step = cosine_schedule(self.step_size, self.final_step_size, k, self.num_steps)
            d = delta.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = model(x + d)
                m = margin(logits, y, target)
                (grad,) = torch.autograd.grad(m.sum(), d)
            with torch.no_grad():
                wrong = logits.argmax(dim=1) != y
                norm = l2_norm(delta)
                improve = wrong & (norm < best_norm)
                best[improve], best_norm[improve] = (x + delta)[improve], norm[improve]
                estimate = (norm + m.detach().clamp_min(0) / l2_norm(grad).clamp_min(1e-12)) * (1 + gamma)
                radius = torch.where(wrong, torch.minimum(radius * (1 - gamma), best_norm),
                                     torch.where(torch.isinf(best_norm), estimate,
                                                 torch.minimum(radius * (1 + gamma), best_norm)))
                scale = torch.where(torch.isfinite(radius), radius, norm).clamp_min(1e-6)
                delta = delta - _expand(step * scale, x) * normalized_step(grad)
                delta = project_l2(delta, radius)
                delta = (x + delta).clamp(0, 1) - x
        with torch.no_grad():
            wrong = model(x + delta).argmax(dim=1) != y
            norm = l2_norm(delta)
            improve = wrong & (norm < best_norm)
            best[improve], best_norm[improve] = (x + delta)[improve], norm[improve]
        return best, best_norm
