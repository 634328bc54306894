"""Minimum-norm unconstrained L2 attack (an FMN-style adaptive norm constraint) with a final line search.

Each step descends the margin (true logit minus the best other, or minus a target's logit) with a
normalised gradient step, projects onto a ball of radius ``eps_k`` and clips to [0, 1]. The radius adapts
per example: before any adversarial point is found it jumps just past the first-order estimate of the
boundary, ``(||delta|| + margin / ||grad||) (1 + gamma_k)``; afterwards it shrinks by (1 - gamma_k) while
adversarial and grows by (1 + gamma_k) otherwise, never above the best norm found. Step size and gamma
decay on a cosine schedule.
By default the attack makes one targeted run against each of the ``num_targets`` other classes ranked
closest by the first-order (DeepFool) estimate margin_j / ||grad margin_j|| at x: on real-MNIST models
that ranking picks the class of the smallest adversarial norm far more often than the clean logits do,
and four short targeted runs beat the untargeted run plus three long logit-ranked ones at less than half
the cost (measurements in ``benchmarks/unconstrained.py``). The untargeted margin run is optional.

Adaptive second round (``adaptive=True``): an example gets targeted runs against the next ``extra_targets``
classes of its ranking when the ranking is uncertain there (the first untried class's first-order distance
is within a factor ``1 + rank_tol`` of the last tried one's) or when it survived the first round (no point
found within the budget the caller names as ``eps``, e.g. an ensemble's largest eps; nothing found at all
when called without one). Robust models make the first-order ranking unreliable exactly on the examples
that survive, so effort goes where it can change a verdict. A bisection along the segment from x to the
best point ends the attack.
"""

from __future__ import annotations

import torch
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext, cosine_schedule, margin
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import NORM_TOL, l2_norm, normalized_step, project_l2

TARGET_ORDERS = ("first-order", "logits")


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


def rank_targets(model: nn.Module, x: torch.Tensor, y: torch.Tensor, how: str = "first-order",
                 candidates: int = 9) -> torch.Tensor:
    """Other classes per example, closest first: by clean logit, or (``first-order``) the ``candidates``
    likeliest classes re-ranked by the DeepFool estimate margin_j / ||grad margin_j|| at x, the rest after them
    in logit order (one forward pass, and one backward pass per candidate)."""
    return ranked_distances(model, x, y, how, candidates)[0]


def ranked_distances(model: nn.Module, x: torch.Tensor, y: torch.Tensor, how: str = "first-order",
                     candidates: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rank_targets` and, per ranked class, its first-order distance (+inf beyond the candidates and
    for the ``logits`` order, which computes none)."""
    with torch.no_grad():
        logits = model(x)
    by_logit = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True)[:, :-1]
    k = min(int(candidates), by_logit.shape[1])
    none = torch.full(by_logit.shape, float("inf"), device=x.device)
    if how == "logits" or k < 2:
        return by_logit, none
    xr = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(xr)
        true = out.gather(1, y[:, None]).squeeze(1)
        dist = []
        for j in range(k):
            m = true - out.gather(1, by_logit[:, j:j + 1]).squeeze(1)
            (grad,) = torch.autograd.grad(m.sum(), xr, retain_graph=j + 1 < k)
            dist.append(m.detach() / l2_norm(grad).clamp_min(1e-12))
    dist_t = torch.stack(dist, dim=1)
    rank = dist_t.argsort(dim=1, stable=True)
    order = torch.cat([by_logit[:, :k].gather(1, rank), by_logit[:, k:]], dim=1)
    return order, torch.cat([dist_t.gather(1, rank), none[:, k:]], dim=1)


class MinimalNorm(Attack):
    """Per-example minimal L2 adversarial norms without a fixed budget (``eps`` at call time is ignored)."""

    name = "fmn"

    def __init__(self, num_steps: int = 40, step_size: float = 2.0, final_step_size: float = 0.01,
                 gamma: float = 0.1, final_gamma: float = 0.001, num_targets: int = 4,
                 line_search_steps: int = 10, target_order: str = "first-order",
                 untargeted: bool | None = None, adaptive: bool = True, extra_targets: int = 5,
                 rank_tol: float = 0.1) -> None:
        if num_steps < 1 or step_size <= 0 or not 0 < gamma < 1 or num_targets < 0:
            raise UserInputError(f"fmn: num_steps={num_steps}, step_size={step_size}, gamma={gamma}, "
                                 f"num_targets={num_targets}; need positive steps and 0 < gamma < 1")
        if extra_targets < 0 or rank_tol < 0:
            raise UserInputError(f"fmn: extra_targets={extra_targets}, rank_tol={rank_tol}; need both >= 0")
        if target_order not in TARGET_ORDERS:
            raise UserInputError(f"fmn: target_order {target_order!r} is not one of {', '.join(TARGET_ORDERS)}")
        if untargeted is False and num_targets == 0:
            raise UserInputError("fmn: untargeted=False needs num_targets >= 1 (otherwise nothing runs)")
        self.num_steps, self.step_size, self.final_step_size = int(num_steps), float(step_size), final_step_size
        self.gamma, self.final_gamma = float(gamma), float(final_gamma)
        self.num_targets, self.line_search_steps = int(num_targets), int(line_search_steps)
        self.target_order = target_order
        self.untargeted = self.num_targets == 0 if untargeted is None else bool(untargeted)
        self.adaptive, self.extra_targets, self.rank_tol = bool(adaptive), int(extra_targets), float(rank_tol)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        order, dist = ranked_distances(model, x, y, self.target_order) if self.num_targets else (None, None)
        targets: list[torch.Tensor | None] = [None] if self.untargeted else []
        tried = 0 if order is None else min(self.num_targets, order.shape[1])
        if order is not None:
            targets += [order[:, k] for k in range(tried)]
        best = x.clone()
        best_norm = torch.full((len(x),), float("inf"), device=x.device)
        for target in targets:
            adv, norm = self._run(model, x, y, target)
            better = norm < best_norm
            best[better], best_norm[better] = adv[better], norm[better]
        if self.adaptive and order is not None and tried < order.shape[1] and self.extra_targets:
            rows = self._second_round(dist, tried, best_norm, ctx).nonzero().flatten()
            for k in range(tried, min(tried + self.extra_targets, order.shape[1])):
                if len(rows) == 0:
                    break
                adv, norm = self._run(model, x[rows], y[rows], order[rows, k])
                better = norm < best_norm[rows]
                best[rows[better]], best_norm[rows[better]] = adv[better], norm[better]
        found = torch.isfinite(best_norm)
        if self.line_search_steps and found.any():
            best = line_search(model, x, y, best, found, self.line_search_steps)
        return best

    def _second_round(self, dist: torch.Tensor, tried: int, best_norm: torch.Tensor,
                      ctx: AttackContext) -> torch.Tensor:
        """Examples that get the next targets: an uncertain first-order ranking at the cut, or a survivor."""
        budget = ctx.eps if ctx.eps is not None else torch.full_like(best_norm, float("inf"))
        survived = ~(best_norm <= budget + NORM_TOL)
        last, nxt = dist[:, tried - 1], dist[:, tried]
        uncertain = torch.isfinite(nxt) & (nxt <= (1 + self.rank_tol) * last.clamp_min(0))
        return survived | uncertain

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
