"""Local Lipschitz constants of conditional generators: estimators from below and, where certified, bounds.

``estimate_lipschitz(gen, method, ...)`` returns a :class:`LipschitzResult`; ``bound_inputs(result_or_path,
percentile)`` turns one into the (lipschitz, slack, radius) a bound needs. Methods are the registered
estimators in ``ESTIMATORS``; a new one is a module with an :class:`Estimator` subclass and one
registration below. Importing this package loads torch only when an estimator is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ESTIMATORS": "intrinsic_robustness.lipschitz.registry",
    "estimate_lipschitz": "intrinsic_robustness.lipschitz.estimate",
    "class_anchors": "intrinsic_robustness.lipschitz.estimate",
    "make_estimator": "intrinsic_robustness.lipschitz.estimate",
    "Estimator": "intrinsic_robustness.lipschitz.base",
    "evaluations_per_anchor": "intrinsic_robustness.lipschitz.gradient",
    "ClassLipschitz": "intrinsic_robustness.lipschitz.result",
    "LipschitzResult": "intrinsic_robustness.lipschitz.result",
    "PERCENTILES": "intrinsic_robustness.lipschitz.result",
    "PERCENTILE_SLACK": "intrinsic_robustness.lipschitz.result",
    "bound_inputs": "intrinsic_robustness.lipschitz.result",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'intrinsic_robustness.lipschitz' has no attribute {name!r}")
