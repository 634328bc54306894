"""Robustness evaluation: attack a classifier under one threat model and keep per-example minimal norms."""

from intrinsic_robustness.evaluation.result import EvalResult, load_norms
from intrinsic_robustness.evaluation.run import class_errors, evaluate
from intrinsic_robustness.threat import DEFAULT_EPS, robust_accuracy

__all__ = ["DEFAULT_EPS", "EvalResult", "class_errors", "evaluate", "load_norms", "robust_accuracy"]
