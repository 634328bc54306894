"""Attacks returning per-example minimal L2 norms, and the registry that builds them by name.

Names: ``pgd`` (the paper's L2 PGD, fixed eps), ``fmn`` (minimum-norm, alias ``minimal``), ``autoattack``
(official AutoAttack, standard L2, fixed eps) for the unconstrained threat; ``latent`` (C&W in latent
space, improved) for the in-distribution threat. Several names make a cascading :class:`Ensemble`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from intrinsic_robustness.attacks.autoattack import AutoAttackL2
from intrinsic_robustness.attacks.base import NORM_TOL, Attack, AttackResult, frozen, margin
from intrinsic_robustness.attacks.ensemble import Ensemble
from intrinsic_robustness.attacks.latent import LatentAttack, invert_latents
from intrinsic_robustness.attacks.minimal import MinimalNorm
from intrinsic_robustness.attacks.pgd import PGD
from intrinsic_robustness.errors import UserInputError

UNCONSTRAINED = {"pgd": PGD, "fmn": MinimalNorm, "minimal": MinimalNorm, "autoattack": AutoAttackL2}
IN_DISTRIBUTION = {"latent": LatentAttack}
DEFAULT_ATTACKS = {"unconstrained": ("fmn", "pgd", "autoattack"), "in-distribution": ("latent",)}

__all__ = ["NORM_TOL", "PGD", "Attack", "AttackResult", "AutoAttackL2", "Ensemble", "LatentAttack",
           "MinimalNorm", "build_attack", "frozen", "invert_latents", "margin", "parse_attack_names"]


def parse_attack_names(attacks: str | Sequence[str] | None, threat: str) -> list[str]:
    """Attack names from a comma list or sequence (None: the default ensemble of the threat model)."""
    if threat not in DEFAULT_ATTACKS:
        raise UserInputError(f"--threat {threat!r} is not one of unconstrained, in-distribution")
    if attacks is None or attacks == "" or attacks == []:
        return list(DEFAULT_ATTACKS[threat])
    items = attacks.split(",") if isinstance(attacks, str) else list(attacks)
    names = [str(a).strip().lower() for a in items if str(a).strip()]
    known = UNCONSTRAINED if threat == "unconstrained" else IN_DISTRIBUTION
    bad = [a for a in names if a not in known]
    if bad:
        raise UserInputError(f"--attack {','.join(bad)}: not an {threat} attack; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def build_attack(names: str | Sequence[str] | None, threat: str, eps: Sequence[float] = (),
                 generator: nn.Module | None = None,
                 options: Mapping[str, Mapping[str, Any]] | None = None) -> Attack:
    """One attack (or a cascading ensemble of several) for ``threat``; ``options[name]`` are its kwargs."""
    chosen = parse_attack_names(names, threat)
    options = dict(options or {})
    unknown = sorted(set(options) - set(chosen))
    if unknown:
        raise UserInputError(f"attack options for {unknown}: those attacks are not selected ({', '.join(chosen)})")
    members: list[Attack] = []
    for name in chosen:
        kwargs = dict(options.get(name, {}))
        try:
            if threat == "in-distribution":
                if generator is None:
                    raise UserInputError("in-distribution attacks need a generator; pass --generator")
                members.append(IN_DISTRIBUTION[name](generator, **kwargs))
            else:
                members.append(UNCONSTRAINED[name](**kwargs))
        except TypeError as exc:
            raise UserInputError(f"attack {name}: bad options {kwargs} ({exc})") from None
    if len(members) == 1 and not members[0].budgeted:
        return members[0]
    return Ensemble(members, eps=eps)
