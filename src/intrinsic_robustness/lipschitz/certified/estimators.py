"""The certified bounds as registered Lipschitz methods: ``certified-global`` and ``certified-local``.

Their per-anchor values are upper bounds (``certified = True``): under ``bound_inputs(..., confidence=...)``
the resulting robustness bound is a high-probability certificate over the draw of the anchors, not an
estimate. ``certified-local`` may certify on a smaller ball than the run's radius (``radius`` option): the
theorems only need balls of radius eps / L, and a result records the radius it holds for, so the bound's
side condition eps <= L_y r is checked against it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.lipschitz.base import Estimator, positive_int


class CertifiedGlobalEstimator(Estimator):
    """Per class, a provable bound on the global Lipschitz constant (every anchor gets the class's value)."""

    name = "certified-global"
    label = "certified global"
    certified = True
    global_bound = True
    bracket = 4

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], float] = {}

    def values(self, gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
               seed: int) -> tuple[torch.Tensor, int]:
        from intrinsic_robustness.lipschitz.certified import certified_global

        key = (id(gen), int(label))
        if key not in self._cache:  # one analysis serves every class whose chain differs only in biases
            labels = list(range(int(gen.num_classes)))  # type: ignore[arg-type]
            for c, value in zip(labels, certified_global(gen, labels, device=anchors.device), strict=True):
                self._cache[(id(gen), c)] = float(value)
        return torch.full((anchors.shape[0],), self._cache[key], dtype=torch.float64), 0

    def parameters(self) -> dict[str, Any]:
        return {"bound": "global: holds for every pair of latents, at any radius"}


class CertifiedLocalEstimator(Estimator):
    """Per anchor, a provable bound on sup ||G(z') - G(z)|| / ||z' - z|| over the latent ball around it.

    ``anchors`` certifies only the first that many of each class's anchors (the same anchors the other
    methods see first): on a CPU each costs about a minute for the paper's ACGAN.
    """

    name = "certified-local"
    label = "certified local"
    certified = True
    bracket = 3

    def __init__(self, radius: float | None = None, anchors: int | None = None, steps: int = 4,
                 refine: int = 2) -> None:
        self.anchors = None if anchors is None else positive_int("anchors", anchors)
        if radius is not None and not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
            raise UserInputError(f"radius={radius!r}: must be a positive finite number (or unset: the run's radius)")
        self.radius = None if radius is None else float(radius)
        self.steps = positive_int("steps", steps)
        self.refine = positive_int("refine", refine, allow_zero=True)

    def radius_for(self, radius: float) -> float:
        return self.radius if self.radius is not None else float(radius)

    def values(self, gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
               seed: int) -> tuple[torch.Tensor, int]:
        from intrinsic_robustness.lipschitz.certified import certified_local

        mine = anchors if self.anchors is None else anchors[: self.anchors]
        values = certified_local(gen, mine, int(label), self.radius_for(radius), device=anchors.device,
                                 steps=self.steps, refine=self.refine)
        return values, 0

    def parameters(self) -> dict[str, Any]:
        return {"anchors_certified": self.anchors, "steps": self.steps, "refine": self.refine,
                "bound": "local: the anchored quotient over the ball of the result's radius"}
