"""Concentration from data: the generator-free estimate of intrinsic robustness (half-spaces, unions of balls),
fitted on one half of a sample and measured on the other."""

from intrinsic_robustness.concentration.estimate import METHODS, estimate_concentration
from intrinsic_robustness.concentration.result import ConcentrationResult, ConcentrationRow, measure, recheck
from intrinsic_robustness.concentration.split import load_sample, split_indices

__all__ = ["METHODS", "ConcentrationResult", "ConcentrationRow", "estimate_concentration", "load_sample", "measure",
           "recheck", "split_indices"]
