"""Re-deriving a committed report.json with the current code (issue 18): clipped bounds, intervals, McNemar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from intrinsic_robustness.cli import main
from intrinsic_robustness.report.data import norms_array
from intrinsic_robustness.report.refresh import refresh
from intrinsic_robustness.stats import clopper_pearson

COMMITTED = Path(__file__).resolve().parents[1] / "docs" / "results" / "mnist-cpu-200"


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads((COMMITTED / "report.json").read_text())


@pytest.fixture(scope="module")
def fresh(stored) -> dict:
    return refresh(stored)


def test_no_t1_above_clean_accuracy_of_its_classes(fresh):
    for c in fresh["classifiers"]:
        clean = float(np.dot(fresh["priors"], 1.0 - np.asarray(c["class_errors"])))
        for table in c["bound"].values():
            assert max(table.values()) <= clean + 1e-12, c["name"]


def test_intervals_are_exact_clopper_pearson_of_the_counts(fresh):
    for c in fresh["classifiers"]:
        n = c["n"]
        for threat, table in c["robust_accuracy"].items():
            for key, value in table.items():
                assert c["robust_accuracy_ci"][threat][key] == pytest.approx(clopper_pearson(round(value * n), n))
        assert c["natural_accuracy_ci"] == pytest.approx(clopper_pearson(round(c["natural_accuracy"] * n), n))


def test_comparisons_match_a_brute_force_sign_test(fresh):
    by_name = {c["name"]: c for c in fresh["classifiers"]}
    assert fresh["comparisons"], "every pair attacked on the same points gets a test"
    for row in fresh["comparisons"][:12]:
        eps = float(row["eps"])
        a = norms_array(by_name[row["a"]]["min_norms"][row["threat"]]) > eps + 1e-6
        b = norms_array(by_name[row["b"]]["min_norms"][row["threat"]]) > eps + 1e-6
        only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
        expected = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b, 0.5).pvalue
        assert row["p_value"] == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_bases_state_the_order_statistic_the_sample_supports(fresh):
    gradient = fresh["lipschitz"]["gradient"]
    assert "order statistic" in gradient["basis"] and gradient["exceeding"] == [1] * 10


def test_refresh_is_idempotent(fresh):
    again = refresh(fresh)
    for a, b in zip(again["classifiers"], fresh["classifiers"], strict=True):
        assert a["bound"] == b["bound"] and a["robust_accuracy_ci"] == b["robust_accuracy_ci"]


def test_irob_report_on_a_report_json_rerenders_it_and_keeps_run_only_figures(tmp_path):
    work = tmp_path / "kept"
    shutil.copytree(COMMITTED, work)
    before = (work / "samples.png").read_bytes()
    assert main(["report", str(work / "report.json")]) == 0
    md = (work / "report.md").read_text()
    assert "T1 estimate (gradient)" in md and "T1 bound (certified-global)" in md
    assert "T1 bound (certified-local)" not in md  # certified per anchor, but its p99 slack is not a certificate
    assert "95% CI" in md and "McNemar" in md and "near_chance" in md
    assert (work / "samples.png").read_bytes() == before


def test_a_json_that_is_not_a_report_is_refused(tmp_path, capsys):
    bad = tmp_path / "report.json"
    bad.write_text(json.dumps({"format": "irob-report/1", "eps": [1.0]}))
    assert main(["report", str(bad)]) == 2
    assert "error:" in capsys.readouterr().err


def test_curve_bands_are_pointwise_clopper_pearson():
    from intrinsic_robustness.report.plots import _band

    fraction = np.array([0.0, 0.25, 0.5, 1.0])
    low, high = _band(fraction, 20)
    for f, lo, hi in zip(fraction, low, high, strict=True):
        assert (lo, hi) == pytest.approx(clopper_pearson(round(f * 20), 20))
        assert lo <= f <= hi


def test_report_says_which_stages_were_redone_and_why(fresh):
    from intrinsic_robustness.report.render import html_page, markdown

    report = dict(fresh, flags=[], stage_reasons={"classifiers/pgd": "config changed: epochs 1 -> 2"})
    assert "- `classifiers/pgd`: config changed: epochs 1 -> 2" in markdown(report, {})
    assert "config changed: epochs 1 -&gt; 2" in html_page(report, {})
    real = dict(report["classifiers"][1], real={"n": 50, "natural_accuracy": 0.9, "robust_accuracy": {"1": 0.5},
                                               "certified_accuracy": None, "natural_accuracy_ci": [0.78, 0.97],
                                               "robust_accuracy_ci": {"1": [0.36, 0.64]}})
    from intrinsic_robustness.report.render import real_line

    assert "0.900 [0.78, 0.97]" in real_line(real) and "1 0.500 [0.36, 0.64]" in real_line(real)
