"""Percentiles a sample cannot resolve: the order statistic and the exceedance the sample shows (issue 18)."""

from __future__ import annotations

import logging

import pytest
import torch

from intrinsic_robustness.lipschitz.confidence import clopper_pearson_upper
from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult, bound_basis


def _result(n: int, classes: int = 2) -> LipschitzResult:
    per_class = tuple(ClassLipschitz.from_values(c, torch.linspace(1.0, 2.0, n, dtype=torch.float64) + c)
                      for c in range(classes))
    return LipschitzResult("gradient", 0.5, {"num_classes": classes}, per_class, 0, 0.0)


def test_p99_of_30_anchors_is_about_p96_7_and_warns(caplog):
    with caplog.at_level(logging.WARNING, "intrinsic_robustness.lipschitz.result"):
        basis = bound_basis(_result(30), "p99")
    assert basis.exceeding == [1, 1] and basis.sample_exceedance() == pytest.approx([1 / 30, 1 / 30])
    assert "1 of 30 above it, empirically a p96.7" in basis.describe()
    assert "not supported by this sample" in caplog.text


def test_p99_of_1000_anchors_slack_is_what_the_config_gets(caplog):
    """The paper's 1000 anchors at p99: 10 above L, joint 95% slack 0.0213 (0.0053 is --percentile max's)."""
    classes = 10
    p99 = bound_basis(_result(1000, classes), "p99", confidence=0.95)
    assert p99.exceeding == [10] * classes
    assert p99.slack[0] == pytest.approx(0.0213, abs=5e-5)
    assert p99.slack[0] == pytest.approx(clopper_pearson_upper(10, 1000, 1 - 0.05 / classes))
    top = bound_basis(_result(1000, classes), "max", confidence=0.95)
    assert top.exceeding == [0] * classes and top.slack[0] == pytest.approx(0.0053, abs=5e-5)
    with caplog.at_level(logging.WARNING, "intrinsic_robustness.lipschitz.result"):
        bound_basis(_result(1000, classes), "p99")  # 10 of 1000 = 0.01 exactly: the nominal slack is supported
    assert "not supported" not in caplog.text
