"""The optional ``[concentration]`` section: its stage on real and generated samples, the report's numbers,
table and curve, skipping when unchanged, and one-line config errors."""

from __future__ import annotations

import json

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.pipeline.config import config_from_dict

TINY = {
    "run": {"name": "tiny", "seed": 0},
    "generator": {"source": "load", "spec": "affine", "data": "digits"},
    "lipschitz": {"methods": ["sampling"], "anchors_per_class": 3, "neighbors": 8},
    "dataset": {"n_train": 30, "n_test": 60, "batch_size": 60},
    "classifiers": [{"name": "std", "method": "standard", "arch": "linear", "epochs": 1, "batch_size": 30}],
    "evaluation": {"eps": [0.1, 0.3], "n": 20, "batch_size": 20, "threats": ["unconstrained"],
                   "attacks": {"unconstrained": ["pgd"]}, "attack_options": {"pgd": {"num_steps": 3,
                                                                                      "step_size": 0.1}}},
    "report": {"samples_per_class": 1, "adversarial_examples": 0},
    "concentration": {"alpha": [0.1, 0.3], "n": 400, "options": {"max_balls": 10, "max_centres": 100,
                                                                 "components": 5}},
}


def test_stage_report_and_skip(tmp_path) -> None:
    from intrinsic_robustness.pipeline.stages import run_pipeline

    run = tmp_path / "run"
    outcomes = run_pipeline(config_from_dict(json.loads(json.dumps(TINY))), run)
    assert [o.name for o in outcomes].index("concentration") == [o.name for o in outcomes].index("dataset") + 1
    real = json.loads((run / "concentration" / "real.json").read_text())
    generated = json.loads((run / "concentration" / "generated.json").read_text())
    assert real["n_train"] + real["n_test"] == 400 and real["dimension"] == 36  # digits at the generator's 6x6
    assert generated["n_train"] + generated["n_test"] == 60
    assert {(r["alpha"], r["eps"]) for r in real["results"]} == {(a, e) for a in (0.1, 0.3) for e in (0.1, 0.3)}
    report = json.loads((run / "report" / "report.json").read_text())
    assert set(report["concentration"]) == {"real", "generated"}
    assert report["concentration"]["real"]["rows"][0]["adv_risk_test"] == real["results"][0]["adv_risk_test"]
    text = (run / "report" / "report.md").read_text()
    assert "## Concentration from data" in text and "not a bound" in text
    assert (run / "report" / "bound_vs_risk.png").is_file()
    again = run_pipeline(config_from_dict(json.loads(json.dumps(TINY))), run)
    assert {o.name: o.action for o in again}["concentration"] == "skipped"


def test_without_the_section_there_is_no_stage() -> None:
    from intrinsic_robustness.pipeline.stages import build_stages

    data = json.loads(json.dumps(TINY))
    del data["concentration"]
    assert "concentration" not in [s.name for s in build_stages(config_from_dict(data), device=None)]


@pytest.mark.parametrize(("change", "key"), [
    ({"alpha": [1.0]}, "concentration.alpha"), ({"eps": [-1.0]}, "concentration.eps"),
    ({"method": "cubes"}, "concentration.method"), ({"sources": ["fake"]}, "concentration.sources"),
    ({"options": {"max_balls": 0}}, "concentration.options.max_balls"),
    ({"options": {"nope": 1}}, "concentration.options.nope"),
])
def test_bad_section_values_name_their_key(change: dict, key: str) -> None:
    data = json.loads(json.dumps(TINY))
    data["concentration"].update(change)
    with pytest.raises(UserInputError, match=key.replace(".", r"\.")):
        config_from_dict(data)


def test_a_generated_region_above_the_overall_bound_is_flagged() -> None:
    from intrinsic_robustness.bound import intrinsic_robustness
    from intrinsic_robustness.report.flags import all_flags

    bound = float(intrinsic_robustness(0.09, 0.5, [1.0, 1.0], priors=[0.5, 0.5], condition="overall", num_classes=2))

    def row(adv: float, eps: float = 0.5, short: bool = False) -> dict:
        return {"method": "balls", "alpha": 0.1, "eps": eps, "risk_test": 0.1, "risk_test_ci": [0.09, 0.11],
                "adv_risk_test": adv, "adv_risk_test_ci": [adv - 0.01, adv + 0.01], "robustness_test": 1 - adv,
                "best": True, "risk_short": short}

    above = 1.0 - bound - 0.05  # its robustness estimate, even at the 95% limit, is above the bound
    report = {"classifiers": [], "eps": [0.5], "priors": [0.5, 0.5],
              "generator": {"fidelity": 0.99, "min_fidelity": 0.5},
              "lipschitz": {"sampling": {"lipschitz": [1.0, 1.0], "slack": None, "eps_limit": 1.0}},
              "concentration": {"generated": {"rows": [row(above), row(1.0 - bound + 0.05), row(above, eps=2.0),
                                                       row(above, short=True)]}}}
    flags = [f for f in all_flags(report) if f["kind"] == "concentration_above_bound"]
    assert len(flags) == 1 and flags[0]["eps"] == 0.5 and flags[0]["bound"] == pytest.approx(bound)
    assert "too small" in flags[0]["message"]
