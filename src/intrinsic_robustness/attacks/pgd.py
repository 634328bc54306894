"""The paper's L2 PGD: normalised gradient steps, projection on the eps ball, clipping to [0, 1].

Paper setting: 100 steps of size 0.5 on the cross-entropy loss. Added: a uniform random start in the ball
(per example, from that example's generator), restarts, and best-iterate tracking (the smallest-norm
misclassified iterate is kept; an example stops once it is broken).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext, margin, per_example_uniform_ball
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import l2_norm, normalized_step, project_l2


def attack_loss(logits: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """Per-example loss to ascend: cross-entropy or the negative margin (C&W style)."""
    if loss == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    return -margin(logits, y)


class PGD(Attack):
    """L2 PGD at a fixed budget ``eps`` (given at call time)."""

    name = "pgd"
    budgeted = True

    def __init__(self, num_steps: int = 100, step_size: float = 0.5, restarts: int = 1,
                 random_start: bool = True, loss: str = "ce") -> None:
        if num_steps < 1 or step_size <= 0 or restarts < 1:
            raise UserInputError(f"pgd: num_steps={num_steps}, step_size={step_size}, restarts={restarts}; "
                                 "need positive values")
        if loss not in ("ce", "margin"):
            raise UserInputError(f"pgd: loss {loss!r} is not one of ce, margin")
        self.num_steps, self.step_size, self.restarts = int(num_steps), float(step_size), int(restarts)
        self.random_start, self.loss = bool(random_start), loss

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        assert ctx.eps is not None
        best = x.clone()
        best_norm = torch.full((len(x),), float("inf"), device=x.device)
        for _ in range(self.restarts):
            todo = torch.isinf(best_norm).nonzero().flatten()
            if len(todo) == 0:
                break
            rngs = [ctx.rngs[i] for i in todo.tolist()]
            adv, norm = self._single_run(model, x[todo], y[todo], ctx.eps[todo], rngs)
            better = norm < best_norm[todo]
            best[todo[better]] = adv[better]
            best_norm[todo[better]] = norm[better]
        return best

    def _single_run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
                    rngs: list[torch.Generator]) -> tuple[torch.Tensor, torch.Tensor]:
        """One run; returns the smallest-norm misclassified iterate per example (+inf norm if none)."""
        delta = per_example_uniform_ball(rngs, x.shape[1:], eps, x.device) if self.random_start \
            else torch.zeros_like(x)
        delta = (x + delta).clamp(0, 1) - x
        best, best_norm = x.clone(), torch.full((len(x),), float("inf"), device=x.device)
        active = torch.arange(len(x), device=x.device)
        for step in range(self.num_steps + 1):
            d = delta[active].requires_grad_(True)
            with torch.enable_grad():
                logits = model(x[active] + d)
                loss = attack_loss(logits, y[active], self.loss)
                (grad,) = torch.autograd.grad(loss.sum(), d)
            wrong = logits.argmax(dim=1) != y[active]
            norm = l2_norm(d.detach())
            improve = wrong & (norm < best_norm[active])
            best[active[improve]] = (x[active] + d.detach())[improve]
            best_norm[active[improve]] = norm[improve]
            keep = ~wrong
            if step == self.num_steps or not keep.any():
                break
            new = d.detach()[keep] + self.step_size * normalized_step(grad[keep])
            new = project_l2(new, eps[active[keep]])
            active = active[keep]
            delta[active] = (x[active] + new).clamp(0, 1) - x[active]
        return best, best_norm
