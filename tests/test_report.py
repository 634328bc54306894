"""Report rendering from a hand-built run directory whose numbers are known (no model is trained here)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from intrinsic_robustness.bound import classifier_bound, intrinsic_robustness
from intrinsic_robustness.pipeline.config import config_from_dict, config_to_dict
from intrinsic_robustness.storage import save_tensors, write_json

EPS = [0.5, 1.0, 2.0]


def _lipschitz_json(path: Path, values_per_class: list[list[float]], method: str) -> None:
    from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult

    per_class = tuple(ClassLipschitz.from_values(c, torch.tensor(v)) for c, v in enumerate(values_per_class))
    LipschitzResult(
        method=method, radius=0.5, parameters={}, per_class=per_class, generator_evaluations=10, seconds=0.0
    ).save(path)


def _eval_json(path: Path, threat: str, norms: list[float], labels: list[int], k: int) -> None:
    """An evaluation of known per-example norms, written by EvalResult itself (the format has one owner)."""
    from intrinsic_robustness.evaluation import EvalResult, class_errors, robust_accuracy

    t = torch.tensor(norms, dtype=torch.float32)
    y = torch.tensor(labels)
    EvalResult(threat=threat, attacks=["pgd"], n=len(norms), natural_error=float((t == 0).double().mean()),
               class_errors=class_errors(t == 0, y, k), min_norms=t, robust_accuracy=robust_accuracy(t, EPS),
               certified_accuracy=None, seconds=1.0, labels=y, success=torch.isfinite(t),
               x_adv=torch.zeros(0, 1, 6, 6)).save(path)


def make_run(tmp_path: Path, affine_generator) -> Path:
    """A run directory with a real (affine) dataset and fabricated evaluation results of known value."""
    from intrinsic_robustness.data.synthetic import generate_dataset

    run = tmp_path / "run"
    cfg = config_from_dict(
        {
            "run": {"name": "fake"},
            "classifiers": [{"name": "a"}, {"name": "b", "method": "pgd"}],
            "lipschitz": {"methods": ["sampling", "gradient"]},
            "evaluation": {"eps": EPS},
            "report": {"samples_per_class": 3, "adversarial_examples": 2},
            "generator": {"source": "load", "spec": "affine"},
        }
    )
    write_json(run / "config.json", config_to_dict(cfg))
    generate_dataset(affine_generator, run / "dataset", n_train=6, n_test=12, seed=0)
    _lipschitz_json(run / "lipschitz" / "sampling.json", [[0.5, 0.6, 0.7]] * 3, "sampling")
    _lipschitz_json(run / "lipschitz" / "gradient.json", [[0.8, 0.9, 1.0]] * 3, "gradient")
    labels = [0, 1, 2, 0, 1, 2]
    _eval_json(
        run / "eval" / "a" / "unconstrained.json",
        "unconstrained",
        [0, 0.3, 0.6, 1.2, 2.5, math.inf],
        labels,
        3,
    )
    _eval_json(
        run / "eval" / "a" / "in-distribution.json",
        "in-distribution",
        [0, 0.4, 0.5, 1.5, 3.0, math.inf],
        labels,
        3,
    )
    _eval_json(run / "eval" / "b" / "unconstrained.json", "unconstrained", [0, 0, 1.1, 1.2, 2.5, 3.0], labels, 3)
    x = torch.rand(6, 1, 6, 6)
    save_tensors(
        run / "eval" / "a" / "unconstrained.safetensors",
        {
            "x": x,
            "x_adv": x * 0.9,
            "labels": torch.tensor(labels),
            "min_norms": torch.tensor([0, 0.3, 0.6, 1.2, 2.5, math.inf]),
            "success": torch.tensor([True, True, True, True, True, False]),
        },
    )
    return run


def test_report_files_numbers_and_flags(tmp_path, affine_generator):
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    paths = write_report(run)
    for key in ("json", "md", "html"):
        assert paths[key].is_file()
    rep = json.loads(paths["json"].read_text())
    assert rep["format"] == "irob-report/1"
    a = {c["name"]: c for c in rep["classifiers"]}["a"]
    # measured numbers are copied as floats in [0, 1]
    assert a["robust_accuracy"]["unconstrained"]["1"] == pytest.approx(3 / 6)
    assert a["robust_accuracy"]["in-distribution"]["1"] == pytest.approx(3 / 6)
    assert a["natural_accuracy"] == pytest.approx(5 / 6)
    # T1 at the classifier's own per-class errors, with the p99 estimate and its 0.01 slack
    lip = [float(np.quantile([0.8, 0.9, 1.0], 0.99))] * 3
    expect = classifier_bound(a["class_errors"], 1.0, lip, slack=[0.01] * 3)
    assert a["bound"]["gradient"]["1"] == pytest.approx(float(expect))
    assert a["gap"]["gradient"]["unconstrained"]["1"] == pytest.approx(float(expect) - 0.5)
    curve = rep["intrinsic"]["curves"]["sampling"]["overall"]["2"]
    risk = rep["intrinsic"]["risk"]
    lip_s = [float(np.quantile([0.5, 0.6, 0.7], 0.99))] * 3
    assert curve[20] == pytest.approx(
        float(intrinsic_robustness(risk[20], 2.0, lip_s, condition="overall", slack=[0.01] * 3, num_classes=3))
    )
    kinds = {f["kind"] for f in rep["flags"]}
    # example 3: in-distribution 0.5 < unconstrained 0.6 -> flagged; eps 2 > L r -> flagged
    assert "in_distribution_below_unconstrained" in kinds
    assert "eps_beyond_lr" in kinds
    assert "fidelity_unknown" in kinds
    for v in _floats(rep["classifiers"][0]["robust_accuracy"]):
        assert 0.0 <= v <= 1.0


def _floats(table: dict) -> list[float]:
    return [v for t in table.values() for v in t.values()]


def test_report_html_is_self_contained(tmp_path, affine_generator):
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    paths = write_report(run)
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == 5
    assert "src='http" not in html and 'src="http' not in html and "<link" not in html
    md = paths["md"].read_text()
    assert "| eps | unconstrained (95% CI) | in-distribution (95% CI) | certified (95% CI) |" in md
    assert "T1 estimate (" in md and "T1 bound (gradient)" not in md  # gradient L is estimated, not certified
    for name in ("bound_vs_risk", "robust_vs_eps", "lipschitz", "samples", "adversarial"):
        png = paths[name].read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_flags_robustness_above_bound(tmp_path, affine_generator):
    """Errors only on class 0 yet no attack succeeding contradicts T1 at large eps: the flag must show."""
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    _eval_json(run / "eval" / "b" / "unconstrained.json", "unconstrained", [0.0] + [math.inf] * 5, [0, 1, 2] * 2, 3)
    rep = json.loads(write_report(run)["json"].read_text())
    above = [f for f in rep["flags"] if f["kind"] == "robust_above_bound" and f["classifier"] == "b"]
    assert above and all(f["measured"] == pytest.approx(5 / 6) and f["measured"] > f["bound"] for f in above)


def test_report_flags_weak_attack(tmp_path, affine_generator):
    """AutoAttack alone finding more than the default ensemble on the same examples is a weak-attack flag."""
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    labels = [0, 1, 2] * 2
    _eval_json(run / "eval" / "a" / "attack-pgd.json", "unconstrained", [0, 0.3, 0.6, 1.2, 2.5, math.inf], labels, 3)
    _eval_json(run / "eval" / "a" / "attack-autoattack.json", "unconstrained", [0, 0.3, 0.6, 0.9, 2.5, 1.9], labels, 3)
    rep = json.loads(write_report(run)["json"].read_text())
    weak = [f for f in rep["flags"] if f["kind"] == "weak_attack"]
    assert {f["eps"] for f in weak} == {1.0, 2.0} and {f["attack"] for f in weak} == {"autoattack"}
    table = rep["classifiers"][0]["per_attack"]["unconstrained"]
    assert table["pgd"]["robust_accuracy"]["1"] == pytest.approx(3 / 6) == table["pgd"]["ensemble"]["1"]
    assert table["autoattack"]["robust_accuracy"]["1"] == pytest.approx(2 / 6) and table["autoattack"]["n"] == 6


def test_weak_attack_counts_examples_missed_even_when_accuracies_tie(tmp_path, affine_generator):
    """The flag counts examples the ensemble left robust that the reference broke: equal robust accuracies (one
    example broken by each attack alone) still hide a miss, and the count per eps is exact."""
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    labels = [0, 1, 2] * 2
    # ensemble (unconstrained.json): [0, 0.3, 0.6, 1.2, 2.5, inf]; the reference misses example 3 and breaks 5.
    _eval_json(run / "eval" / "a" / "attack-autoattack.json", "unconstrained", [0, 0.3, 0.6, math.inf, 2.5, 1.5],
               labels, 3)
    rep = json.loads(write_report(run)["json"].read_text())
    entry = rep["classifiers"][0]["per_attack"]["unconstrained"]["autoattack"]
    assert entry["robust_accuracy"] == entry["ensemble"]  # tied at every eps
    assert entry["missed"] == {"0.5": 0, "1": 0, "2": 1}
    weak = [f for f in rep["flags"] if f["kind"] == "weak_attack"]
    assert [f["eps"] for f in weak] == [2.0]
    assert all(f["missed"] == 1 and "breaks 1 of the first 6" in f["message"] for f in weak)
    md = (run / "report" / "report.md").read_text()
    assert "Cross-check (unconstrained): autoattack alone on the first 6 examples" in md
    assert "2: 0.333 vs 0.333, 1 missed" in md
    assert "1 missed" in (run / "report" / "report.html").read_text()


def test_no_weak_attack_when_the_reference_finds_nothing_new(tmp_path, affine_generator):
    """A reference weaker than the ensemble everywhere raises no flag (it breaks nothing the ensemble missed)."""
    from intrinsic_robustness.report import write_report

    run = make_run(tmp_path, affine_generator)
    _eval_json(run / "eval" / "a" / "attack-autoattack.json", "unconstrained", [0, 0.5, 0.9, 2.0, math.inf, math.inf],
               [0, 1, 2] * 2, 3)
    rep = json.loads(write_report(run)["json"].read_text())
    assert not [f for f in rep["flags"] if f["kind"] == "weak_attack"]
    assert set(rep["classifiers"][0]["per_attack"]["unconstrained"]["autoattack"]["missed"].values()) == {0}
