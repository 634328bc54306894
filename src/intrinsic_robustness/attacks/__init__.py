"""Attacks returning per-example minimal L2 norms, and the registry that builds them by name.

Registered: ``pgd`` (the paper's L2 PGD, fixed eps), ``fmn`` (minimum-norm, alias ``minimal``), ``autoattack``
(official AutoAttack, standard L2, fixed eps) for the unconstrained threat; ``latent`` (scale-free:
Gauss-Newton boundary searches and a whitened version of the paper's penalty search) for the in-distribution
threat. Several names make a cascading :class:`Ensemble`. A new
attack is one module with an :class:`Attack` subclass (its ``threat`` a class variable) and one
``register_attack`` line below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.attacks.autoattack import AutoAttackL2
from intrinsic_robustness.attacks.base import Attack, AttackResult, margin
from intrinsic_robustness.attacks.ensemble import Ensemble
from intrinsic_robustness.attacks.latent import LatentAttack, invert_latents
from intrinsic_robustness.attacks.minimal import MinimalNorm
from intrinsic_robustness.attacks.pgd import PGD
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.registry import Registry
from intrinsic_robustness.threat import NORM_TOL, THREATS

ATTACKS: Registry[type[Attack]] = Registry("attack")


def register_attack(name: str, cls: type[Attack], label: str, aliases: tuple[str, ...] = ()) -> None:
    """Register ``cls`` under ``name``; its threat is the one its class states (``Attack.threat``)."""
    ATTACKS.register(name, cls, aliases=aliases, threat=cls.threat, label=label)


register_attack("pgd", PGD, "PGD (L2, fixed eps)")
register_attack("fmn", MinimalNorm, "FMN (minimum norm)", aliases=("minimal",))
register_attack("autoattack", AutoAttackL2, "AutoAttack (standard L2)")
register_attack("latent", LatentAttack, "latent (scale-free)")

# The default ensemble per threat and device type. AutoAttack is a default member on CUDA; on a CPU it is a
# cross-check run on a sample (evaluation.compare_attacks), because there it costs ~20-40x the cheap cascade.
DEFAULT_ATTACKS = {"unconstrained": {"cpu": ("fmn", "pgd"), "cuda": ("fmn", "pgd", "autoattack")},
                   "in-distribution": {"cpu": ("latent",), "cuda": ("latent",)}}

__all__ = ["ATTACKS", "DEFAULT_ATTACKS", "NORM_TOL", "PGD", "Attack", "AttackResult", "AutoAttackL2", "Ensemble",
           "LatentAttack", "MinimalNorm", "attack_names", "default_attacks", "build_attack", "invert_latents", "margin",
           "parse_attack_names", "register_attack"]


def attack_names(threat: str) -> tuple[str, ...]:
    """Registered attacks of one threat model."""
    return ATTACKS.names(threat=threat)


def default_attacks(threat: str, device: str | torch.device = "cpu") -> tuple[str, ...]:
    """The default ensemble of ``threat`` on ``device`` (CUDA adds AutoAttack to the unconstrained one)."""
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    return DEFAULT_ATTACKS[threat][kind]


def parse_attack_names(attacks: str | Sequence[str] | None, threat: str,
                       device: str | torch.device = "cpu") -> list[str]:
    """Attack names from a comma list or sequence (None: the default ensemble of the threat on ``device``)."""
    if threat not in THREATS:
        raise UserInputError(f"--threat {threat!r} is not one of {', '.join(THREATS)}")
    if attacks is None:
        return list(default_attacks(threat, device))
    items = attacks.split(",") if isinstance(attacks, str) else list(attacks)
    names = [str(a).strip().lower() for a in items if str(a).strip()]
    known = attack_names(threat)
    if not names:
        raise UserInputError(f"no {threat} attack named; choose from {', '.join(known)} (or name none for the default)")
    bad = [a for a in names if a not in ATTACKS or ATTACKS.info(a)["threat"] != threat]
    if bad:
        raise UserInputError(f"--attack {','.join(bad)}: not an {threat} attack; choose from {', '.join(known)}")
    return list(dict.fromkeys(ATTACKS.canonical(a) for a in names))


def build_attack(names: str | Sequence[str] | None, threat: str, eps: Sequence[float] = (),
                 generator: nn.Module | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
                 device: str | torch.device = "cpu") -> Attack:
    """One attack (or a cascading ensemble of several) for ``threat``; ``options[name]`` are its kwargs."""
    chosen = parse_attack_names(names, threat, device)
    options = {ATTACKS.canonical(k) if k in ATTACKS else k: v for k, v in dict(options or {}).items()}
    unknown = sorted(set(options) - set(chosen))
    if unknown:
        raise UserInputError(f"attack options for {unknown}: those attacks are not selected ({', '.join(chosen)})")
    members: list[Attack] = []
    for name in chosen:
        kwargs = dict(options.get(name, {}))
        cls = ATTACKS.get(name)
        if threat == "in-distribution" and generator is None:
            raise UserInputError("in-distribution attacks need a generator; pass --generator")
        try:
            members.append(cls(generator, **kwargs) if threat == "in-distribution" else cls(**kwargs))
        except TypeError as exc:
            raise UserInputError(f"attack {name}: bad options {kwargs} ({exc})") from None
    if len(members) == 1 and not members[0].budgeted:
        return members[0]
    return Ensemble(members, eps=eps)
