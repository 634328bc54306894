"""The registered Lipschitz estimators: names, labels and whether their values are certified upper bounds."""

from __future__ import annotations

from intrinsic_robustness.lipschitz.base import Estimator
from intrinsic_robustness.lipschitz.certified.estimators import CertifiedGlobalEstimator, CertifiedLocalEstimator
from intrinsic_robustness.lipschitz.gradient import GradientEstimator
from intrinsic_robustness.lipschitz.sampling import PaperSamplingEstimator, SamplingEstimator
from intrinsic_robustness.registry import Registry

ESTIMATORS: Registry[type[Estimator]] = Registry("lipschitz method")
for _cls in (SamplingEstimator, PaperSamplingEstimator, GradientEstimator, CertifiedLocalEstimator,
             CertifiedGlobalEstimator):
    ESTIMATORS.register(_cls.name, _cls, label=_cls.label, certified=_cls.certified)
