"""The attack template: one final ``__call__`` that validates, freezes the model, runs the algorithm and
re-checks every claimed success; subclasses only write ``_attack``.

Every attack returns one frozen :class:`AttackResult` with per-example smallest L2 norms (+inf where nothing
was found, 0 where the clean point is already misclassified), so one run gives robust accuracy at every eps.
Randomness is per example: example ``i`` of the dataset draws from a generator seeded by
``derive_seed(seed, name, i)``, so attacking it alone or inside any batch gives the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.runtime import derive_seed, make_generator
from intrinsic_robustness.threat import NORM_TOL, eps_key, l2_norm, misclassified, robust_accuracy, uniform_ball


@dataclass(frozen=True)
class AttackResult:
    """Per-example outcome: adversarial points, verified success, smallest L2 norm found (image space)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    z_adv: torch.Tensor | None = None

    def robust(self, eps: float) -> torch.Tensor:
        """True where no misclassified point within ``eps`` was found (natural errors count as broken)."""
        return ~(self.norms <= eps + NORM_TOL)

    def robust_accuracy(self, eps: float) -> float:
        return robust_accuracy(self.norms, [eps])[eps_key(eps)] if len(self.norms) else float("nan")


@dataclass
class AttackContext:
    """What the algorithm sees besides model, x and y: the budget, per-example RNGs and latents."""

    eps: torch.Tensor | None
    rngs: list[torch.Generator]
    z: torch.Tensor | None = None
    extras: dict[str, object] = field(default_factory=dict)
    start: torch.Tensor | None = None


def margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """logit_y minus the largest other logit (or minus logit_target): negative means misclassified."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    if target is not None:
        return true - logits.gather(1, target[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], float("-inf"))
    return true - others.max(dim=1).values


def per_example_randn(rngs: Sequence[torch.Generator], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """One standard normal draw of ``shape`` per example, each from that example's own generator."""
    return torch.stack([torch.randn(*shape, generator=g, device=device) for g in rngs]) if rngs else \
        torch.zeros(0, *shape, device=device)


def per_example_uniform_ball(rngs: Sequence[torch.Generator], shape: Sequence[int], eps: torch.Tensor,
                             device: torch.device) -> torch.Tensor:
    """Uniform points in each example's L2 ball of radius eps[i] (see :func:`threat.uniform_ball`)."""
    return uniform_ball((len(rngs), *shape), eps, list(rngs), device=device)


def cosine_schedule(start: float, end: float, k: int, total: int) -> float:
    """Cosine annealing from ``start`` (step 0) to ``end`` (step ``total``), shared by the iterative attacks."""
    return end + (start - end) * (1 + math.cos(math.pi * k / max(total, 1))) / 2


class Attack:
    """Template: subclasses set ``name`` (and ``budgeted``/``threat``) and implement ``_attack`` only."""

    name: ClassVar[str] = "attack"
    budgeted: ClassVar[bool] = False
    threat: ClassVar[str] = "unconstrained"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__}: override _attack, not __call__ (the template checks results)")

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                ctx: AttackContext) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The algorithm: candidate adversarial images (latent attacks: ``(x_adv, z_adv)``)."""
        raise NotImplementedError

    def modules(self) -> list[nn.Module]:
        """Modules besides the classifier that must be frozen during the attack (e.g. a generator)."""
        return []

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float | None = None,
                 seed: int = 0, index: torch.Tensor | Sequence[int] | None = None,
                 z: torch.Tensor | None = None, start: torch.Tensor | None = None) -> AttackResult:
        """Attack ``(x, y)``; ``index`` names each example's position in the dataset (its randomness);
        ``start``: points found earlier (e.g. by an ensemble's other members) that an attack may start from."""
        x, y, index = self._validate(x, y, eps, index, z)
        if start is not None and start.shape != x.shape:
            raise UserInputError(f"{self.name}: start has shape {tuple(start.shape)}, expected {tuple(x.shape)}")
        device = x.device
        rngs = [make_generator(derive_seed(seed, self.name, int(i)), device) for i in index]
        eps_t = None if eps is None else torch.full((len(x),), float(eps), device=device)
        ctx = AttackContext(eps=eps_t, rngs=rngs, z=None if z is None else z.to(device),
                            extras={"index": index, "seed": int(seed)},
                            start=None if start is None else start.to(device))
        with frozen(model, *self.modules()):
            if len(x) == 0:
                return AttackResult(x.clone(), torch.zeros(0, dtype=torch.bool, device=device),
                                    torch.zeros(0, device=device), None if z is None else z.clone())
            with torch.no_grad():
                clean_wrong = misclassified(model(x), y)  # NaN/inf logits: wrong, never robust
            x_adv, z_adv = self._attack_correct(model, x, y, ctx, clean_wrong)
            return self._verify(model, x, y, x_adv, z_adv, clean_wrong, ctx.z)

    def _attack_correct(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: AttackContext,
                        clean_wrong: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the algorithm only on correctly classified examples (the rest are broken at norm 0)."""
        rows = (~clean_wrong).nonzero().flatten()
        latent = self.threat == "in-distribution" and ctx.z is not None
        x_adv, z_adv = x.clone(), (ctx.z.clone() if latent else None)
        if len(rows) == 0:
            return x_adv, z_adv
        keep = rows.tolist()
        sub = AttackContext(eps=None if ctx.eps is None else ctx.eps[rows], rngs=[ctx.rngs[i] for i in keep],
                            z=None if ctx.z is None else ctx.z[rows],
                            extras={**ctx.extras, "index": [ctx.extras["index"][i] for i in keep]},
                            start=None if ctx.start is None else ctx.start[rows])
        out = self._attack(model, x[rows], y[rows], sub)
        part_x, part_z = out if isinstance(out, tuple) else (out, None)
        x_adv[rows] = part_x.detach().to(x.dtype)
        if part_z is not None and z_adv is not None:
            z_adv[rows] = part_z.detach()
        return x_adv, z_adv

    def _validate(self, x: torch.Tensor, y: torch.Tensor, eps: float | None,
                  index: torch.Tensor | Sequence[int] | None,
                  z: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.is_floating_point():
            raise UserInputError(f"{self.name}: x must be a float tensor [batch, ...] of images in [0, 1]")
        if not torch.isfinite(x).all() or (len(x) and (x.min() < 0 or x.max() > 1)):
            raise UserInputError(f"{self.name}: x has values outside [0, 1]; pass images on the [0, 1] scale")
        y = torch.as_tensor(y, device=x.device).long()
        if y.shape != (len(x),):
            raise UserInputError(f"{self.name}: y has shape {tuple(y.shape)}, expected ({len(x)},)")
        if self.budgeted and (eps is None or not eps > 0):
            raise UserInputError(f"{self.name}: needs a positive eps budget (got {eps})")
        idx = list(range(len(x))) if index is None else [int(i) for i in torch.as_tensor(index).tolist()]
        if len(idx) != len(x):
            raise UserInputError(f"{self.name}: index has {len(idx)} entries for {len(x)} examples")
        if z is not None and (z.ndim != 2 or len(z) != len(x)):
            raise UserInputError(f"{self.name}: z must be [batch, latent_dim] with {len(x)} rows")
        if self.threat == "in-distribution" and z is None:
            raise UserInputError(f"{self.name}: in-distribution attacks need the latents z of x "
                                 "(use a dataset made by 'irob generate' or invert the images first)")
        return x, y, idx

    def _verify(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                z_adv: torch.Tensor | None, clean_wrong: torch.Tensor,
                z: torch.Tensor | None) -> AttackResult:
        """Recompute predictions and norms on the returned points; unverified claims become failures."""
        if x_adv.shape != x.shape:
            raise RuntimeError(f"{self.name}: returned x_adv of shape {tuple(x_adv.shape)} for x {tuple(x.shape)}")
        with torch.no_grad():
            if z_adv is not None:
                x_adv = self.decode(z_adv, y)  # never trust the attack's own decoding
            finite = torch.isfinite(x_adv.flatten(1)).all(dim=1)
            x_adv = torch.where(finite.reshape(-1, *([1] * (x.ndim - 1))), x_adv, x).clamp(0.0, 1.0)
            wrong = misclassified(model(x_adv), y) & finite
            norms = torch.where(wrong, l2_norm(x_adv - x), torch.full_like(wrong, float("inf"), dtype=x.dtype))
            shape = (-1, *([1] * (x.ndim - 1)))
            x_adv = torch.where(clean_wrong.reshape(shape), x, x_adv)
            norms = torch.where(clean_wrong, torch.zeros_like(norms), norms)
            if z_adv is not None and z is not None:
                z_adv = torch.where(clean_wrong[:, None], z, z_adv)
        return AttackResult(x_adv=x_adv, success=wrong | clean_wrong, norms=norms, z_adv=z_adv)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Latent attacks map latents to images; the template uses it to re-check their results."""
        raise RuntimeError(f"{self.name}: returned latents but has no generator to decode them")
