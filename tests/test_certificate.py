"""When a bound may be called a certificate: certified L, a confidence-backed slack, and the report's bracket."""

from __future__ import annotations

import json

import pytest
import torch
from scipy import stats

from intrinsic_robustness.cli import main
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import make_affine
from intrinsic_robustness.lipschitz import estimate_lipschitz
from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult, bound_basis


def _result(method: str, values: list[list[float]], certified: bool) -> LipschitzResult:
    per_class = tuple(ClassLipschitz.from_values(k, torch.tensor(v)) for k, v in enumerate(values))
    return LipschitzResult(method=method, radius=0.5, parameters={"num_classes": len(values)}, per_class=per_class,
                           generator_evaluations=0, seconds=0.0, certified=certified)


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_slack_is_the_bonferroni_clopper_pearson_limit(confidence: float, k: int) -> None:
    """K classes at joint confidence 1 - beta: each class's slack is the Beta(k+1, n-k) quantile at 1 - beta/K."""
    n, classes = 60, 3
    values = [[1.0] * (n - k) + [2.0] * k for _ in range(classes)]
    basis = bound_basis(_result("gradient", values, certified=False), "p95", confidence)
    assert basis.lipschitz[0] < 2.0 or k == 0  # p95 of 60 values leaves the k largest above L (k <= 3)
    exceeding = basis.exceeding[0]
    level = 1 - (1 - confidence) / classes
    expected = 1 - (1 - level) ** (1 / n) if exceeding == 0 else stats.beta.ppf(level, exceeding + 1, n - exceeding)
    assert basis.slack == pytest.approx([expected] * classes, rel=1e-9)
    assert not basis.certificate and "not a certificate" in basis.describe()


def test_certified_values_with_confidence_make_a_certificate() -> None:
    values = [[1.0, 1.2, 1.1, 0.9] * 25 for _ in range(2)]
    certified = bound_basis(_result("certified-local", values, certified=True), "max", 0.95)
    assert certified.certificate and certified.exceeding == [0, 0]
    assert "high-probability certificate" in certified.describe()
    nominal = bound_basis(_result("certified-local", values, certified=True), "max")
    assert not nominal.certificate and nominal.slack == [0.0, 0.0]  # nominal slack: assumed, not a certificate


def test_a_certified_global_constant_is_a_certificate_without_slack() -> None:
    gen = make_affine()
    result = estimate_lipschitz(gen, "certified-global", anchors_per_class=3, device="cpu")
    basis = bound_basis(result, "max", 0.95)
    assert basis.certificate and basis.slack == [0.0] * 3
    assert basis.lipschitz == pytest.approx([gen.spectral_norm] * 3, rel=1e-4)


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 2.0, float("nan")])
def test_bad_confidence_is_one_line(confidence: float) -> None:
    with pytest.raises(UserInputError, match="confidence"):
        bound_basis(_result("gradient", [[1.0, 2.0]], certified=False), "max", confidence)


def test_cli_bound_reports_the_basis(tmp_path, capsys) -> None:
    gen = make_affine()
    for method, options in (("gradient", {}), ("certified-local", {"radius": 0.2})):
        estimate_lipschitz(gen, method, anchors_per_class=20, device="cpu", **options).save(tmp_path / f"{method}.json")
    verdict = {}
    for method in ("gradient", "certified-local"):
        code = main(["bound", "--risk", "0.05", "--eps", "0.05", "--lipschitz-file", str(tmp_path / f"{method}.json"),
                     "--percentile", "max", "--confidence", "0.95", "--json"])
        assert code == 0
        verdict[method] = json.loads(capsys.readouterr().out)
    assert verdict["certified-local"]["certificate"] and not verdict["gradient"]["certificate"]
    assert verdict["certified-local"]["radius"] == 0.2 and verdict["gradient"]["radius"] == 0.5
    # Same L (the affine map attains ||A|| everywhere) and the same anchors, so the same slack and bound
    bounds = [verdict[m]["results"][0]["bound"] for m in ("certified-local", "gradient")]
    assert bounds[0] == pytest.approx(bounds[1])
    assert main(["bound", "--risk", "0.05", "--eps", "1", "--lipschitz", "1", "--confidence", "0.95"]) == 2
    assert "--confidence needs --lipschitz-file" in capsys.readouterr().err
