"""The reference: official AutoAttack (package ``pyautoattack``), standard L2 version, at a fixed eps.

Standard version = APGD-CE, APGD-T (9 target classes), FAB-T (9 targets), Square (5000 queries). With fewer
than ten classes the target counts shrink to num_classes - 1, and APGD-T (whose targeted DLR loss needs
four classes) is left out below four. AutoAttack seeds the global torch RNG itself and draws its random
starts for a whole batch at once, so one example's start would depend on the others in its batch; it is
therefore run one example at a time, seeded from that example's own generator (``derive_seed(seed,
"autoattack", index)``): an example alone gets exactly the answer it gets inside any batch. This costs the
batching of AutoAttack's forward and backward passes (see :class:`AutoAttackL2`). Everything runs inside
``torch.random.fork_rng``, so the caller's global RNG state is untouched.
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
    """AutoAttack (L2) at the call's eps, one example at a time; ``attacks``/``square_queries`` allow a cheaper
    custom run."""

    name = "autoattack"
    budgeted = True

    def __init__(self, attacks: tuple[str, ...] | None = None, square_queries: int = 5000) -> None:
        chosen = tuple(attacks) if attacks else STANDARD
        unknown = sorted(set(chosen) - {"apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"})
        if unknown:
            raise UserInputError(f"autoattack: unknown sub-attacks {unknown}; choose from apgd-ce, apgd-dlr, "
                                 "apgd-t, fab, fab-t, square")
        self.attacks, self.square_queries = chosen, int(square_queries)

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext) -> torch.Tensor:
        """One AutoAttack run per example, each seeded from that example's generator (batch-independent)."""
        assert ctx.eps is not None
        num_classes = int(model(x[:1]).shape[1])
        runs = [a for a in self.attacks if not (a in ("apgd-t", "apgd-dlr") and num_classes < 4)]
        if len(runs) < len(self.attacks):
            log.info("autoattack: %d classes, leaving out the DLR-based attacks", num_classes)
        out = x.clone()
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for i in range(len(x)):
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.rngs[i], device=x.device))
                adversary = self._adversary(model, float(ctx.eps[i]), seed, runs, num_classes, x.device)
                x_adv, _ = adversary.run_standard_evaluation(x[i:i + 1].clone(), y[i:i + 1].clone(), batch_size=1)
                out[i] = x_adv[0].to(x.device, x.dtype)
        return out

    def _adversary(self, model: nn.Module, eps: float, seed: int, runs: list[str], num_classes: int,
                   device: torch.device) -> object:
        from pyautoattack import AutoAttack

        adversary = AutoAttack(model, norm="L2", eps=eps, version="standard", seed=seed, device=device)
        adversary.version = "custom"
        adversary.attacks_to_run = runs
        targets = max(1, min(9, num_classes - 1))
        adversary.apgd_targeted.n_target_classes = targets
        adversary.fab.n_target_classes = targets
        adversary.square.n_queries = self.square_queries
        adversary.verbose = False
        return adversary
