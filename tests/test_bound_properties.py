"""Property tests (hypothesis) of the bound: range, monotonicity, eps = 0, scale invariance, orderings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from intrinsic_robustness.bound import (
    adversarial_risk_lower_bound,
    classifier_bound,
    intrinsic_robustness,
    max_eps,
    worst_case_allocation,
)

risks = st.floats(0.0, 1.0)
epsilons = st.floats(0.0, 20.0)
conditions = st.sampled_from(["per_class", "overall"])


@st.composite
def class_setups(draw, max_classes=4):
    """Per-class Lipschitz constants, priors (or uniform) and slack (or none) for 1..max_classes classes."""
    k = draw(st.integers(1, max_classes))
    lips = draw(st.lists(st.floats(0.05, 20.0), min_size=k, max_size=k))
    weights = draw(st.one_of(st.none(), st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k)))
    priors = None if weights is None else list(np.asarray(weights) / np.sum(weights))
    slack = draw(st.one_of(st.none(), st.lists(st.floats(0.0, 0.2), min_size=k, max_size=k)))
    return {"lipschitz": lips, "priors": priors, "slack": slack, "num_classes": k}


@given(risks, epsilons, class_setups(), conditions)
def test_bound_lies_in_unit_interval(risk, eps, setup, condition):
    value = intrinsic_robustness(risk, eps, condition=condition, **setup)
    assert 0.0 <= value <= 1.0
    adv = adversarial_risk_lower_bound(risk, eps, condition=condition, **setup)
    assert 0.0 <= adv <= 1.0


@given(risks, epsilons, epsilons, class_setups(), conditions)
def test_non_increasing_in_eps(risk, e1, e2, setup, condition):
    lo, hi = sorted((e1, e2))
    values = intrinsic_robustness(risk, np.array([lo, hi]), condition=condition, **setup)
    assert values[0] >= values[1] - 1e-12


@given(risks, epsilons, class_setups(), st.floats(1.0, 10.0), conditions)
def test_non_decreasing_in_lipschitz(risk, eps, setup, factor, condition):
    larger = {**setup, "lipschitz": [lip * factor for lip in setup["lipschitz"]]}
    base = intrinsic_robustness(risk, eps, condition=condition, **setup)
    assert intrinsic_robustness(risk, eps, condition=condition, **larger) >= base - 1e-12


@given(risks, class_setups(), conditions)
def test_eps_zero_gives_one_minus_risk(risk, setup, condition):
    no_slack = {**setup, "slack": None}
    assert intrinsic_robustness(risk, 0.0, condition=condition, **no_slack) == pytest.approx(
        1 - risk, abs=1e-12
    )


@given(risks, epsilons, class_setups(), st.floats(0.01, 100.0), conditions)
def test_invariant_when_eps_and_lipschitz_scale_together(risk, eps, setup, scale, condition):
    scaled = {**setup, "lipschitz": [lip * scale for lip in setup["lipschitz"]]}
    base = intrinsic_robustness(risk, eps, condition=condition, **setup)
    assert intrinsic_robustness(risk, eps * scale, condition=condition, **scaled) == pytest.approx(
        base, rel=1e-9, abs=1e-12
    )


@given(risks, epsilons, class_setups())
def test_overall_never_below_per_class(risk, eps, setup):
    per_class = intrinsic_robustness(risk, eps, **setup)
    overall = intrinsic_robustness(risk, eps, condition="overall", **setup)
    assert overall >= per_class - 1e-12


@given(risks, epsilons, class_setups())
def test_per_class_bound_is_t1_with_every_class_at_risk(risk, eps, setup):
    k = setup["num_classes"]
    t1 = classifier_bound([risk] * k, eps, setup["lipschitz"], setup["priors"], setup["slack"])
    assert intrinsic_robustness(risk, eps, **setup) == pytest.approx(t1, rel=1e-12, abs=1e-15)


@given(risks, epsilons, class_setups())
def test_worst_case_allocation_attains_the_overall_bound(risk, eps, setup):
    no_slack = {**setup, "slack": None}
    allocation = worst_case_allocation(risk, eps, setup["lipschitz"], setup["priors"], setup["num_classes"])
    priors = (
        np.full(setup["num_classes"], 1 / setup["num_classes"])
        if setup["priors"] is None
        else setup["priors"]
    )
    assert np.all((allocation >= 0) & (allocation <= 1))
    assert float(allocation @ np.asarray(priors)) == pytest.approx(risk, abs=1e-9)
    t1 = classifier_bound(allocation, eps, setup["lipschitz"], setup["priors"])
    assert t1 == pytest.approx(intrinsic_robustness(risk, eps, condition="overall", **no_slack), abs=1e-9)


@given(risks, epsilons, class_setups(), conditions)
def test_slack_never_lowers_the_bound_and_complements_hold(risk, eps, setup, condition):
    no_slack = {**setup, "slack": None}
    with_slack = intrinsic_robustness(risk, eps, condition=condition, **setup)
    assert with_slack >= intrinsic_robustness(risk, eps, condition=condition, **no_slack) - 1e-12
    total = with_slack + adversarial_risk_lower_bound(risk, eps, condition=condition, **setup)
    if setup["slack"] is None:
        assert total == pytest.approx(1.0, abs=1e-12)
    else:
        assert total >= 1.0 - 1e-12  # clipping can only make the pair looser, never inconsistent


@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), class_setups(max_classes=3), conditions)
def test_max_eps_round_trip(risk, fraction, setup, condition):
    at_zero = intrinsic_robustness(risk, 0.0, condition=condition, **setup)
    plateau = intrinsic_robustness(risk, 1e3 * max(setup["lipschitz"]), condition=condition, **setup)
    level = plateau + fraction * (at_zero - plateau)
    assume(at_zero - plateau > 1e-6)
    eps = max_eps(level, risk, condition=condition, **setup)
    if np.isfinite(eps):
        assert intrinsic_robustness(risk, eps, condition=condition, **setup) == pytest.approx(level, abs=1e-8)
    else:
        assert intrinsic_robustness(risk, 1e6, condition=condition, **setup) >= level - 1e-12


@given(st.floats(0.0, 0.999), st.floats(0.0, 1.0), st.floats(0.05, 20.0))
def test_max_eps_closed_form_matches_bisection(risk, fraction, lip):
    level = fraction * (1 - risk)
    closed = max_eps(level, risk, lip)
    bisected = max_eps(level, risk, lip, condition="overall", num_classes=1)  # one class: bisection path
    if np.isfinite(closed):
        assert bisected == pytest.approx(closed, rel=1e-9, abs=1e-9)
    else:
        assert not np.isfinite(bisected)
