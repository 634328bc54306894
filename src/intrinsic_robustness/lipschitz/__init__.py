"""Local Lipschitz estimation of conditional generators (estimates from below, never certificates).

``estimate_lipschitz(gen, method="sampling" | "gradient", ...)`` returns a :class:`LipschitzResult`;
``bound_inputs(result_or_path, percentile)`` turns one into the (lipschitz, slack, radius) a bound needs.
"""

from intrinsic_robustness.lipschitz.estimate import METHODS, class_anchors, estimate_lipschitz
from intrinsic_robustness.lipschitz.gradient import evaluations_per_anchor
from intrinsic_robustness.lipschitz.result import (
    PERCENTILE_SLACK,
    PERCENTILES,
    ClassLipschitz,
    LipschitzResult,
    bound_inputs,
)

__all__ = [
    "METHODS",
    "PERCENTILES",
    "PERCENTILE_SLACK",
    "ClassLipschitz",
    "LipschitzResult",
    "bound_inputs",
    "class_anchors",
    "estimate_lipschitz",
    "evaluations_per_anchor",
]
