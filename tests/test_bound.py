"""The bound against truth: closed forms, mpmath tails, brute-force worst cases, a Monte Carlo half-space."""

from __future__ import annotations

import doctest
import subprocess
import sys

import mpmath
import numpy as np
import pytest
from scipy.stats import norm

import intrinsic_robustness.bound as bound_module
from intrinsic_robustness.bound import (
    adversarial_risk_lower_bound,
    classifier_bound,
    intrinsic_robustness,
    max_eps,
    worst_case_allocation,
)
from intrinsic_robustness.errors import UserInputError


def test_docstring_examples_pass():
    result = doctest.testmod(bound_module)
    assert result.attempted >= 8
    assert result.failed == 0


# ------------------------------------------------------------------------------------------- closed forms
def test_one_lipschitz_matches_the_closed_form():
    # Rob = 1 - Phi(Phi^{-1}(risk) + eps / L) with scipy.stats as an independent reference
    for risk, eps, lip in [(0.1, 0.5, 1.0), (0.3, 2.0, 4.0), (0.01, 0.3, 0.2), (0.5, 1.0, 1.0)]:
        expected = 1 - norm.cdf(norm.ppf(risk) + eps / lip)
        assert intrinsic_robustness(risk, eps, lip) == pytest.approx(expected, rel=1e-12)
    assert intrinsic_robustness(0.5, 1.0, 1.0) == pytest.approx(0.15865525393145707, rel=1e-12)


def test_per_class_lipschitz_is_the_prior_weighted_sum():
    risk, eps, lips, priors = 0.2, 0.7, np.array([0.5, 1.0, 3.0]), np.array([0.2, 0.3, 0.5])
    expected = np.sum(priors * norm.cdf(norm.ppf(1 - risk) - eps / lips))
    assert intrinsic_robustness(risk, eps, lips, priors=priors) == pytest.approx(expected, rel=1e-12)
    # uniform priors by default; slack adds delta_y per class, clipped at the trivial bound 1 - risk
    uniform = np.mean(norm.cdf(norm.ppf(1 - risk) - eps / lips))
    assert intrinsic_robustness(risk, eps, lips) == pytest.approx(uniform, rel=1e-12)
    slack = np.array([0.05, 0.0, 0.9])
    terms = np.minimum(1.0 - risk, norm.cdf(norm.ppf(1 - risk) - eps / lips) + slack)
    assert intrinsic_robustness(risk, eps, lips, priors, slack=slack) == pytest.approx(
        priors @ terms, rel=1e-12
    )


def test_classifier_bound_t1():
    errors, lips = np.array([0.05, 0.4]), np.array([1.0, 2.0])
    eps = np.array([0.0, 0.5, 1.5])
    got = classifier_bound(errors, eps, lips, priors=[0.6, 0.4])
    expected = [
        0.6 * norm.cdf(norm.ppf(1 - 0.05) - e / 1.0) + 0.4 * norm.cdf(norm.ppf(0.6) - e / 2.0) for e in eps
    ]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert classifier_bound(errors, 0.0, lips, priors=[0.6, 0.4]) == pytest.approx(
        1 - (0.6 * 0.05 + 0.4 * 0.4)
    )
    with_slack = classifier_bound(errors, 1.0, lips, priors=[0.6, 0.4], slack=[0.01, 0.02])
    assert with_slack == pytest.approx(
        classifier_bound(errors, 1.0, lips, priors=[0.6, 0.4]) + 0.6 * 0.01 + 0.4 * 0.02
    )


def test_shapes_and_types():
    assert isinstance(intrinsic_robustness(0.1, 1.0, 1.0), float)
    grid = intrinsic_robustness(np.linspace(0, 1, 5)[:, None], np.array([0.0, 1.0, 2.0]), 1.0)
    assert isinstance(grid, np.ndarray) and grid.shape == (5, 3)
    assert intrinsic_robustness([0.1, 0.2], 1.0, 1.0).shape == (2,)
    assert intrinsic_robustness(0.0, 5.0, 1.0) == 1.0  # no error set: nothing to expand
    assert intrinsic_robustness(1.0, 0.0, 1.0) == 0.0
    assert isinstance(classifier_bound([0.1, 0.2], 1.0, 1.0), float)


def test_overall_with_equal_priors_is_closed_form():
    # risk 0.25 over 4 equal classes: one class always wrong, the other three always right
    assert intrinsic_robustness(0.25, 3.0, 1.0, condition="overall", num_classes=4) == pytest.approx(0.75)
    # risk 0.1 over 4 classes: the whole error on one class (fraction 0.4), the largest L chosen
    lips = [0.5, 2.0, 1.0, 1.0]
    expected = 0.75 + 0.25 * norm.cdf(norm.ppf(0.6) - 1.0 / 2.0)
    assert intrinsic_robustness(0.1, 1.0, lips, condition="overall") == pytest.approx(expected, rel=1e-12)
    assert worst_case_allocation(0.1, 1.0, lips).tolist() == pytest.approx([0.0, 0.4, 0.0, 0.0])
    # many classes (beyond the enumeration limit) still work with equal priors
    big = intrinsic_robustness(0.105, 1.0, 1.0, condition="overall", num_classes=100)
    assert big == pytest.approx(0.89 + 0.01 * norm.cdf(norm.ppf(0.5) - 1.0), rel=1e-12)


def test_equal_priors_closed_form_agrees_with_enumeration():
    rng = np.random.default_rng(0)
    for k in (2, 3, 5, 8):
        lips = rng.uniform(0.2, 3.0, k)
        risk, eps = rng.uniform(0, 1, 200), rng.uniform(0, 4, 200)
        enumerated, _, _ = bound_module._overall_enumerate(risk, eps, lips, np.full(k, 1 / k))
        closed = bound_module._overall_equal_priors(risk, eps, lips)
        np.testing.assert_allclose(enumerated, closed, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------ overall worst case: brute force
def _brute_force_overall(risk, eps, lips, priors, steps):
    """Largest T1 robustness (scipy.stats, independent of the module) over gridded allocations with
    p.a >= risk: the whole cube for K = 2, plus the face p.a = risk parametrised by solving each coordinate in
    turn from the others on a grid (so the steep corner of Phi(Phi^{-1}(a) + c) near a = 0 is not missed)."""
    lips, priors = np.asarray(lips), np.asarray(priors)
    k, grid = len(priors), np.linspace(0, 1, steps)
    others = np.stack(np.meshgrid(*[grid] * (k - 1), indexing="ij"), -1).reshape(-1, k - 1)
    candidates = [np.stack(np.meshgrid(*[grid] * k, indexing="ij"), -1).reshape(-1, k)] if k == 2 else []
    for solved in range(k):
        rest = np.delete(np.arange(k), solved)
        alloc = np.empty((len(others), k))
        alloc[:, rest] = others
        alloc[:, solved] = (risk - others @ priors[rest]) / priors[solved]
        candidates.append(alloc)
    alloc = np.concatenate(candidates)
    alloc = alloc[(alloc >= 0).all(1) & (alloc <= 1).all(1) & (alloc @ priors >= risk - 1e-12)]
    robustness = norm.cdf(norm.ppf(1 - alloc) - eps / lips) @ priors
    return robustness.max()


def _random_cases(n, seed=5):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = 2 if i < n // 2 else 3
        yield (
            rng.uniform(0.02, 0.9),
            rng.uniform(0.1, 3.0),
            rng.uniform(0.3, 3.0, k),
            rng.dirichlet(np.ones(k)),
        )


@pytest.mark.parametrize(
    "case",
    [
        (0.3, 1.0, [1.0, 1.0], [0.5, 0.5]),
        (0.6, 0.8, [2.0, 0.5], [0.4, 0.6]),
        (0.25, 1.0, [1.0, 2.0, 0.5], [0.5, 0.3, 0.2]),
        *_random_cases(12),
    ],
)
def test_overall_worst_case_matches_brute_force(case):
    risk, eps, lips, priors = case
    priors = np.array(priors)
    exact = intrinsic_robustness(risk, eps, lips, priors=priors, condition="overall")
    brute = _brute_force_overall(risk, eps, lips, priors, steps=401 if len(priors) == 2 else 201)
    assert brute <= exact + 1e-12  # every allocation is feasible, so none may beat the exact worst case
    assert exact - brute < 2e-3  # and the grid gets close to it
    allocation = worst_case_allocation(risk, eps, lips, priors=priors)
    assert allocation @ priors == pytest.approx(risk)
    assert classifier_bound(allocation, eps, lips, priors=priors) == pytest.approx(exact, rel=1e-12)
    assert np.sum((allocation > 0) & (allocation < 1)) <= 1  # a vertex: at most one class partly wrong


def test_overall_is_looser_than_per_class_and_slack_enters_once():
    lips, priors = [1.0, 2.0, 0.5], [0.5, 0.3, 0.2]
    per_class = intrinsic_robustness(0.2, 1.0, lips, priors=priors)
    overall = intrinsic_robustness(0.2, 1.0, lips, priors=priors, condition="overall")
    assert overall > per_class
    with_slack = intrinsic_robustness(
        0.2, 1.0, lips, priors=priors, condition="overall", slack=[0.1, 0.0, 0.05]
    )
    assert with_slack == pytest.approx(min(1.0 - 0.2, overall + 0.5 * 0.1 + 0.2 * 0.05))
    assert overall <= 1.0 - 0.2 + 1e-12


# --------------------------------------------------------------------------------------------- Monte Carlo
def test_half_space_error_sets_attain_t2_exactly():
    """Class y's images are L_y * z (an L_y-Lipschitz generator); the classifier errs on the half-space
    {x_1 > L_y t}. Its latent error set {z_1 > t} has measure `risk`, and a point is attackable within eps
    iff its L2 distance to the half-space, (L_y t - x_1)_+, is <= eps. The measured robustness equals T2."""
    rng = np.random.default_rng(1234)
    n, dim, risk, lips, eps = 200_000, 5, 0.2, np.array([0.5, 2.0]), 0.4
    t = norm.ppf(1 - risk)
    robust = []
    for lip in lips:
        x = lip * rng.standard_normal((n, dim))
        wrong = x[:, 0] > lip * t
        distance = np.maximum(lip * t - x[:, 0], 0.0)
        assert abs(wrong.mean() - risk) < 4 * np.sqrt(risk * (1 - risk) / n)
        robust.append(np.mean(distance > eps))
    measured = np.mean(robust)
    bound = intrinsic_robustness(risk, eps, lips)
    sd = np.sqrt(bound * (1 - bound) / (2 * n))
    assert abs(measured - bound) < 4 * sd
    # the one-step attack along e_1 realises the same robustness: the bound is attained, not just approached
    x = lips[0] * rng.standard_normal((n, dim))
    x[:, 0] += eps
    assert abs(np.mean(x[:, 0] <= lips[0] * t) - intrinsic_robustness(risk, eps, lips[0])) < 4 * sd * np.sqrt(
        2
    )


# ----------------------------------------------------------------------------------------------- inverse
def test_max_eps_closed_form_and_round_trip():
    assert max_eps(0.5, 0.1, 2.0) == pytest.approx(2 * (norm.ppf(0.5) - norm.ppf(0.1)), rel=1e-12)
    assert max_eps(0.0, 0.3, 1.0) == np.inf  # the bound never drops below 0
    assert max_eps(0.9, 0.0, 1.0) == np.inf  # zero risk: nothing to expand
    assert max_eps(0.7, 0.3, 1.0) == pytest.approx(0.0, abs=1e-9)
    for levels, kwargs in [
        ([0.05, 0.3, 0.6], dict(lipschitz=[0.5, 1.0, 4.0])),
        ([0.05, 0.3, 0.6], dict(lipschitz=1.0, slack=0.02)),
        # risk 0.25: the bound falls from 0.75 towards 0.7 (class 1 half wrong, class 2 wrong)
        ([0.71, 0.73, 0.745], dict(lipschitz=[1.0, 2.0, 0.5], priors=[0.5, 0.3, 0.2], condition="overall")),
    ]:
        eps = max_eps(levels, 0.25, **kwargs)
        assert np.isfinite(eps).all()
        np.testing.assert_allclose(intrinsic_robustness(0.25, eps, **kwargs), levels, atol=1e-9)


def test_max_eps_infinite_when_the_bound_plateaus_and_error_when_unreachable():
    # slack keeps the per-class bound above sum p_y delta_y forever
    assert max_eps(0.04, 0.3, [1.0, 2.0], slack=0.05) == np.inf
    # overall with unequal priors: class 2 (p = 0.2) wrong, the rest right keeps 0.7 at any eps for risk 0.25
    assert max_eps(0.69, 0.25, [1.0, 2.0, 3.0], priors=[0.5, 0.3, 0.2], condition="overall") == np.inf
    with pytest.raises(UserInputError, match="level"):
        max_eps(0.8, 0.3, 1.0)


# ------------------------------------------------------------------------------------------ tail precision
def _mp_ndtri(q):
    return mpmath.sqrt(2) * mpmath.erfinv(2 * mpmath.mpf(q) - 1)


@pytest.mark.parametrize("risk, eps", [(0.5, 11.0), (1e-3, 12.0), (0.9, 7.5), (0.2, 30.0)])
def test_small_robustness_keeps_relative_precision(risk, eps):
    with mpmath.workdps(60):
        reference = float(mpmath.ncdf(-(_mp_ndtri(risk) + mpmath.mpf(eps))))
    assert reference < 1e-12
    assert intrinsic_robustness(risk, eps, 1.0) == pytest.approx(reference, rel=1e-9)
    # overall with equal priors: ceil(K risk) - 1 classes wrong and only the free class's tiny term remains
    if risk < 0.5:
        with mpmath.workdps(60):
            ref_overall = float(mpmath.ncdf(-(_mp_ndtri(2 * risk) + mpmath.mpf(eps))) / 2 + mpmath.mpf(1) / 2)
        assert intrinsic_robustness(risk, eps, 1.0, condition="overall", num_classes=2) == pytest.approx(
            ref_overall, rel=1e-12
        )


@pytest.mark.parametrize("risk, eps", [(1e-30, 0.1), (1e-200, 2.0), (1e-12, 0.5)])
def test_small_adversarial_risk_keeps_relative_precision(risk, eps):
    with mpmath.workdps(60):
        reference = float(mpmath.ncdf(_mp_ndtri(risk) + mpmath.mpf(eps)))
    assert adversarial_risk_lower_bound(risk, eps, 1.0) == pytest.approx(reference, rel=1e-9)
    # overall: concentrating the error on one class expands least (concavity); the smaller of the two wins
    with mpmath.workdps(60):
        ref_overall = min(float(p * mpmath.ncdf(_mp_ndtri(risk / p) + mpmath.mpf(eps))) for p in (0.3, 0.7))
    got = adversarial_risk_lower_bound(risk, eps, [1.0, 1.0], priors=[0.3, 0.7], condition="overall")
    assert got == pytest.approx(ref_overall, rel=1e-9)
    assert got < adversarial_risk_lower_bound(risk, eps, 1.0)


def test_adversarial_and_robustness_are_complements():
    risk, eps = np.linspace(0, 1, 11)[:, None], np.array([0.0, 0.3, 2.0])
    for kwargs in [
        dict(lipschitz=[1.0, 3.0]),
        dict(lipschitz=[1.0, 3.0], priors=[0.2, 0.8], condition="overall"),
    ]:
        total = intrinsic_robustness(risk, eps, **kwargs) + adversarial_risk_lower_bound(risk, eps, **kwargs)
        np.testing.assert_allclose(total, 1.0, atol=1e-12)


# --------------------------------------------------------------------------------------------- bad input
BAD_INPUTS = [
    (dict(risk=1.2, eps=1.0, lipschitz=1.0), "risk"),
    (dict(risk=-0.1, eps=1.0, lipschitz=1.0), "risk"),
    (dict(risk=float("nan"), eps=1.0, lipschitz=1.0), "risk"),
    (dict(risk=0.1, eps=-1.0, lipschitz=1.0), "eps"),
    (dict(risk=0.1, eps=float("inf"), lipschitz=1.0), "eps"),
    (dict(risk=0.1, eps=float("nan"), lipschitz=1.0), "eps"),
    (dict(risk=0.1, eps=1.0, lipschitz=0.0), "lipschitz"),
    (dict(risk=0.1, eps=1.0, lipschitz=[1.0, -2.0]), "lipschitz"),
    (dict(risk=0.1, eps=1.0, lipschitz=float("inf")), "lipschitz"),
    (dict(risk=0.1, eps=1.0, lipschitz=float("nan")), "lipschitz"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, priors=[0.5, 0.6]), "priors"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, priors=[1.2, -0.2]), "priors"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, priors=[0.5, float("nan")]), "priors"),
    (dict(risk=0.1, eps=1.0, lipschitz=[1.0, 2.0], priors=[0.2, 0.3, 0.5]), "lipschitz=2, priors=3"),
    (dict(risk=0.1, eps=1.0, lipschitz=[1.0, 2.0], slack=[0.1, 0.1, 0.1]), "different lengths"),
    (dict(risk=0.1, eps=1.0, lipschitz=[1.0, 2.0], num_classes=3), "num_classes=3"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, slack=1.5), "slack"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, condition="average"), "condition"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, condition="overall"), "num_classes"),
    (dict(risk=0.1, eps=1.0, lipschitz=1.0, num_classes=0), "num_classes"),
    (dict(risk=[0.1, 0.2], eps=[1.0, 2.0, 3.0], lipschitz=1.0), "broadcast"),
    (dict(risk="high", eps=1.0, lipschitz=1.0), "risk"),
    (
        dict(
            risk=0.1,
            eps=1.0,
            lipschitz=1.0,
            priors=np.full(13, 1 / 13) + np.linspace(-0.01, 0.01, 13),
            condition="overall",
        ),
        "13 classes",
    ),
]


@pytest.mark.parametrize("kwargs, fragment", BAD_INPUTS)
def test_bad_input_is_a_one_line_error_naming_the_argument(kwargs, fragment):
    with pytest.raises(UserInputError, match=fragment) as info:
        intrinsic_robustness(**kwargs)
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_bad_input_in_the_other_functions():
    with pytest.raises(UserInputError, match="class_errors"):
        classifier_bound([0.1, 1.5], 1.0, 1.0)
    with pytest.raises(UserInputError, match="different lengths"):
        classifier_bound([0.1, 0.2], 1.0, [1.0, 2.0, 3.0])
    with pytest.raises(UserInputError, match="eps"):
        classifier_bound([0.1, 0.2], -1.0, 1.0)
    with pytest.raises(UserInputError, match="level"):
        max_eps(1.5, 0.1, 1.0)
    with pytest.raises(UserInputError, match="scalar"):
        worst_case_allocation([0.1, 0.2], 1.0, 1.0, num_classes=2)
    with pytest.raises(UserInputError, match="num_classes"):
        worst_case_allocation(0.1, 1.0, 1.0)


def test_nan_never_comes_out():
    risk = np.array([0.0, 1e-300, 0.5, 1 - 1e-16, 1.0])[:, None]
    eps = np.array([0.0, 1e-300, 1.0, 1e6])[None, :]
    for kwargs in [
        dict(lipschitz=1.0),
        dict(lipschitz=[1e-3, 1e3], priors=[0.3, 0.7], condition="overall"),
        dict(lipschitz=[1.0, 2.0], slack=[0.0, 1.0]),
    ]:
        for fn in (intrinsic_robustness, adversarial_risk_lower_bound):
            values = fn(risk, eps, **kwargs)
            assert np.isfinite(values).all() and (values >= 0).all() and (values <= 1).all()


def test_import_is_light_and_fast():
    code = (
        "import sys, time; t = time.process_time(); import intrinsic_robustness, intrinsic_robustness.bound; "
        "print(time.process_time() - t, 'torch' in sys.modules, 'matplotlib' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[1:] == ["False", "False"]
    # CPU time rather than wall time, so agents sharing the cores do not make this flaky (about 0.25 s here)
    assert float(out[0]) < 1.0
