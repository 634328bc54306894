"""Several attacks as one: the per-example minimum norm over members, spending effort only where needed.

AutoAttack's cascade, generalised to minimal norms: minimum-norm members run first (the first on every
example, later ones only on examples still robust at the largest eps of interest); then each budgeted
member runs at each eps in increasing order, only on examples still robust at that eps. The result is at
least as strong as every member at every eps in the grid, and its norms are the per-example minimum.
Minimum-norm members are told the largest eps as their budget of interest, so an adaptive one (``fmn``)
spends its second round on the examples that survive it. Budgeted members receive the best point found so
far as ``start`` (``pgd`` then targets its class on examples just outside eps).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext, AttackResult
from intrinsic_robustness.errors import UserInputError


class Ensemble(Attack):
    """Runs ``members`` in cascade over the eps grid; ``last_counts`` records examples attacked per member."""

    name = "ensemble"

    def __init__(self, members: Sequence[Attack], eps: Sequence[float] = ()) -> None:
        if not members:
            raise UserInputError("ensemble: give at least one attack")
        if any(m.budgeted for m in members) and not eps:
            raise UserInputError("ensemble: budgeted attacks (pgd, autoattack) need an eps grid")
        self.members = list(members)
        self.eps = sorted(float(e) for e in eps)
        self.threat = "in-distribution" if any(m.threat == "in-distribution" for m in members) else "unconstrained"
        if self.threat == "in-distribution" and any(m.threat != "in-distribution" for m in members):
            raise UserInputError("ensemble: do not mix in-distribution and unconstrained attacks")
        self.last_counts: dict[str, int] = {}

    def modules(self) -> list[nn.Module]:
        return [m for member in self.members for m in member.modules()]

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return next(m for m in self.members if m.threat == "in-distribution").decode(z, y)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                ctx: AttackContext) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(ctx.extras["index"], device=x.device)
        seed = int(ctx.extras["seed"])
        best = AttackResult(x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device),
                            torch.full((len(x),), float("inf"), device=x.device),
                            None if ctx.z is None else ctx.z.clone())
        self.last_counts = {}
        top = self.eps[-1] if self.eps else float("inf")
        first = True
        for member in [m for m in self.members if not m.budgeted]:
            todo = torch.ones(len(x), dtype=torch.bool, device=x.device) if first else best.robust(top)
            best = self._run(member, model, x, y, ctx, todo, index, seed, None, best,
                             hint=top if self.eps else None)
            first = False
        for member in [m for m in self.members if m.budgeted]:
            for eps in self.eps:
                best = self._run(member, model, x, y, ctx, best.robust(eps), index, seed, eps, best)
        return best.x_adv if best.z_adv is None else (best.x_adv, best.z_adv)

    def _run(self, member: Attack, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext,
             todo: torch.Tensor, index: torch.Tensor, seed: int, eps: float | None,
             best: AttackResult, hint: float | None = None) -> AttackResult:
        """Run one member on the examples in ``todo`` and keep the smaller norm per example (``hint``: the
        budget of interest handed to a minimum-norm member)."""
        rows = todo.nonzero().flatten()
        key = member.name if eps is None else f"{member.name}@{eps:g}"
        self.last_counts[key] = self.last_counts.get(key, 0) + len(rows)
        if len(rows) == 0:
            return best
        z = None if ctx.z is None else ctx.z[rows]
        start = best.x_adv[rows] if member.budgeted else None
        res = member(model, x[rows], y[rows], eps=eps if eps is not None else hint, seed=seed, index=index[rows], z=z,
                     start=start)
        better = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        better[rows] = res.norms < best.norms[rows]
        take = better[rows]
        x_adv, norms, success = best.x_adv.clone(), best.norms.clone(), best.success.clone()
        x_adv[rows[take]], norms[rows[take]] = res.x_adv[take], res.norms[take]
        success[rows[take]] = True
        z_adv = best.z_adv
        if z_adv is not None and res.z_adv is not None:
            z_adv = z_adv.clone()
            z_adv[rows[take]] = res.z_adv[take]
        return AttackResult(x_adv, success, norms, z_adv)
