"""The reference: official AutoAttack (package ``pyautoattack``), standard L2 version, at a fixed eps.

Standard version = APGD-CE, APGD-T (9 target classes), FAB-T (9 targets), Square (5000 queries). With fewer
than ten classes the target counts shrink to num_classes - 1, and APGD-T (whose targeted DLR loss needs
four classes) is left out below four. AutoAttack seeds the global torch RNG itself; we run it inside
``torch.random.fork_rng`` so the caller's global state is untouched. Its seed is derived from ours and from
the examples' dataset indices, so a rerun of the same batch reproduces it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from intrinsic_robustness.attacks.base import Attack, AttackContext
from intrinsic_robustness.errors import UserInputError

log = logging.getLogger(__name__)

STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


class AutoAttackL2(Attack):
    """AutoAttack (L2) at the call's eps; ``attacks``/``square_queries`` allow a cheaper custom run."""

    name = "autoattack"
    budgeted = True

    def __init__(self, attacks: tuple[str, ...] | None = None, square_queries: int = 5000,
                 batch_size: int = 500) -> None:
        chosen = tuple(attacks) if attacks else STANDARD
        unknown = sorted(set(chosen) - {"apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"})
        if unknown:
            raise UserInputError(f"autoattack: unknown sub-attacks {unknown}; choose from apgd-ce, apgd-dlr, "
                                 "apgd-t, fab, fab-t, square")
        self.attacks, self.square_queries, self.batch_size = chosen, int(square_queries), int(batch_size)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        from pyautoattack import AutoAttack

        assert ctx.eps is not None
        num_classes = int(model(x[:1]).shape[1])
        runs = [a for a in self.attacks if not (a in ("apgd-t", "apgd-dlr") and num_classes < 4)]
        if len(runs) < len(self.attacks):
            log.info("autoattack: %d classes, leaving out the DLR-based attacks", num_classes)
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.rngs[0], device=x.device)) if ctx.rngs else 0
        adversary = AutoAttack(model, norm="L2", eps=float(ctx.eps[0]), version="standard", seed=seed,
                               device=x.device)
        adversary.version = "custom"
        adversary.attacks_to_run = runs
        targets = max(1, min(9, num_classes - 1))
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        adversary.square.n_queries = self.square_queries
        adversary.verbose = False
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            x_adv, _ = adversary.run_standard_evaluation(x.clone(), y.clone(), batch_size=self.batch_size)
        return x_adv.to(x.device, x.dtype)
