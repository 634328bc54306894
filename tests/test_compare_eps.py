"""``evaluation.compare_eps``: the reference attack runs at its own eps grid, and the report counts per eps the
examples it broke that the ensemble left robust."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import NORM_TOL


def _config(**evaluation: object) -> dict:
    return {
        "run": {"name": "cmp", "seed": 0},
        "generator": {"source": "load", "spec": "affine"},
        "lipschitz": {"methods": ["sampling"], "anchors_per_class": 2, "neighbors": 8},
        "dataset": {"n_train": 60, "n_test": 12, "batch_size": 60},
        "classifiers": [{"name": "c", "method": "standard", "arch": "linear", "epochs": 2, "batch_size": 20}],
        "evaluation": {"threats": ["unconstrained"], "eps": [0.1, 0.2, 0.4], "n": 10, "batch_size": 10,
                       "attacks": {"unconstrained": ["fmn"]}, "compare_attacks": ["pgd"],
                       "attack_options": {"pgd": {"num_steps": 5, "step_size": 0.1},
                                          "fmn": {"num_steps": 5, "num_targets": 1, "adaptive": False}}, **evaluation},
        "report": {"samples_per_class": 2, "adversarial_examples": 2},
    }


def test_reference_runs_only_at_compare_eps_and_misses_are_counted(tmp_path: Path) -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import run_pipeline

    run_pipeline(config_from_dict(_config(compare_eps=[0.4, 0.2], compare_n=8)), tmp_path / "run")
    ref = json.loads((tmp_path / "run/eval/c/attack-pgd.json").read_text())
    assert ref["n"] == 8 and sorted(map(float, ref["robust_accuracy"])) == [0.2, 0.4]
    report = json.loads((tmp_path / "run/report/report.json").read_text())
    entry = report["classifiers"][0]["per_attack"]["unconstrained"]["pgd"]
    main = json.loads((tmp_path / "run/eval/c/unconstrained.json").read_text())
    ens = [float("inf") if v is None else float(v) for v in main["min_norms"][:8]]
    alone = [float("inf") if v is None else float(v) for v in ref["min_norms"]]
    for key, count in entry["missed"].items():  # recount by hand from the two files' per-example norms
        e = float(key) + NORM_TOL
        assert count == sum(1 for a, b in zip(ens, alone, strict=True) if a > e and b <= e)
    weak = {f["eps"] for f in report["flags"] if f["kind"] == "weak_attack"}
    assert weak == {float(k) for k, v in entry["missed"].items() if v > 0}


@pytest.mark.parametrize("bad", [[0.0], [-1.0], [float("inf")], []])
def test_bad_compare_eps_is_refused(bad: list[float]) -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict

    with pytest.raises(UserInputError, match="compare_eps"):
        config_from_dict(_config(compare_eps=bad))
