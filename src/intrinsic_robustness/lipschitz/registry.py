"""The registered Lipschitz estimators and their facts (``Estimator.facts``: label, certified, global bound,
output scale, bracket place, report reference), read by config, bound and report through ``ESTIMATORS.info``."""

from __future__ import annotations

from typing import Any

from intrinsic_robustness.lipschitz.base import Estimator
from intrinsic_robustness.lipschitz.certified.estimators import CertifiedGlobalEstimator, CertifiedLocalEstimator
from intrinsic_robustness.lipschitz.gradient import GradientEstimator
from intrinsic_robustness.lipschitz.sampling import PaperSamplingEstimator, SamplingEstimator
from intrinsic_robustness.registry import Registry

ESTIMATORS: Registry[type[Estimator]] = Registry("lipschitz method")
for _cls in (SamplingEstimator, PaperSamplingEstimator, GradientEstimator, CertifiedLocalEstimator,
             CertifiedGlobalEstimator):
    ESTIMATORS.register(_cls.name, _cls, **_cls.facts())


def estimator_facts(method: str) -> dict[str, Any]:
    """A method's registered facts; a method no longer registered (an old result file) gets the base defaults."""
    return ESTIMATORS.info(method) if method in ESTIMATORS else Estimator.facts() | {"label": method}
