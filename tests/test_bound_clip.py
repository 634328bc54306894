"""The bound is never worse than trivial: no term exceeds clean accuracy, whatever the slack."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from intrinsic_robustness.bound import (
    adversarial_risk_lower_bound,
    classifier_bound,
    classifier_bound_trivial,
    intrinsic_robustness,
)

unit = st.floats(0.0, 1.0)
lips = st.floats(0.05, 50.0)


@settings(max_examples=200, deadline=None)
@given(errors=st.lists(unit, min_size=1, max_size=5), eps=st.floats(0.0, 5.0), lip=lips,
       slack=st.floats(0.0, 0.5))
def test_t1_never_exceeds_clean_accuracy(errors, eps, lip, slack):
    errors = np.array(errors)
    bound = classifier_bound(errors, eps, lip, slack=slack)
    assert bound <= np.mean(1.0 - errors) + 1e-12
    raw = norm.sf(norm.ppf(errors) + eps / lip) + slack  # Phi(Phi^-1(1-a) - s), exact for tiny a
    expected = np.mean(np.where(errors >= 1, 0.0, np.minimum(1.0 - errors, np.where(errors <= 0, 1.0, raw))))
    assert bound == np.float64(expected) or abs(bound - expected) < 1e-9


@settings(max_examples=200, deadline=None)
@given(risk=st.floats(0.0, 1.0), eps=st.floats(0.0, 5.0), lip=lips, slack=st.floats(0.0, 0.5),
       condition=st.sampled_from(["per_class", "overall"]))
def test_t2_and_overall_never_exceed_one_minus_risk(risk, eps, lip, slack, condition):
    value = intrinsic_robustness(risk, eps, [lip, 2 * lip], condition=condition, slack=slack, num_classes=2)
    assert value <= 1.0 - risk + 1e-12
    adv = adversarial_risk_lower_bound(risk, eps, [lip, 2 * lip], condition=condition, slack=slack, num_classes=2)
    assert adv >= risk - 1e-12


def test_clip_binds_only_where_it_should():
    # no slack, eps > 0: the isoperimetric term is strictly below clean accuracy, so nothing is clipped
    assert not classifier_bound_trivial([0.05, 0.2], 1.0, 5.0).any()
    # a slack larger than what eps / L removes: clipped, the bound is the clean accuracy itself (trivial)
    assert classifier_bound_trivial([0.05, 0.2], 0.1, 20.0, slack=0.2).all()
    assert classifier_bound([0.05, 0.2], 0.1, 20.0, slack=0.2) == np.mean([0.95, 0.8])
    # per eps: small eps trivial, large eps not
    np.testing.assert_array_equal(classifier_bound_trivial([0.05], [0.1, 10.0], 5.0, slack=0.02), [True, False])


def test_cli_bound_marks_trivial_rows_and_names_an_estimate(capsys):
    """``irob bound`` flags rows where the clip at 1 - risk binds and calls a number from a given L an estimate."""
    import json

    from intrinsic_robustness.cli import main

    code = main(["bound", "--risk", "0.1", "--eps", "0.01", "--eps", "5", "--lipschitz", "1", "--slack", "0.05",
                 "--json"])
    assert code in (0, None)
    payload = json.loads(capsys.readouterr().out)
    assert payload["kind"] == "estimate"
    small, large = payload["results"]
    assert small["trivial"] and small["bound"] == pytest.approx(0.9)
    assert not large["trivial"] and large["bound"] < 0.9
