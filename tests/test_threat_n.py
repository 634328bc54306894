"""``evaluation.threat_n``: one threat attacks only the first m of the n test points (a costly latent attack on a
big generator), the report's intervals use each threat's own count, and runs without the key are unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError


def _config(**evaluation: object) -> dict:
    """The compare_eps tests' tiny run, with both threats and no reference attack."""
    from tests.test_compare_eps import _config as tiny

    latent = {"num_steps": 4, "search_steps": 1, "paper_search": False}
    return tiny(threats=["unconstrained", "in-distribution"], eps=[0.1, 0.4], compare_attacks=[],
                attacks={"unconstrained": ["fmn"], "in-distribution": ["latent"]},
                attack_options={"fmn": {"num_steps": 5, "num_targets": 1, "adaptive": False}, "latent": latent},
                **evaluation)


def test_each_threat_attacks_its_own_count_and_the_report_uses_it(tmp_path: Path) -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import run_pipeline
    from intrinsic_robustness.stats import proportion_ci

    run_pipeline(config_from_dict(_config(threat_n={"in-distribution": 4})), tmp_path / "run")
    uncon = json.loads((tmp_path / "run/eval/c/unconstrained.json").read_text())
    indist = json.loads((tmp_path / "run/eval/c/in-distribution.json").read_text())
    assert (uncon["n"], indist["n"]) == (10, 4)
    assert len(indist["min_norms"]) == 4
    report = json.loads((tmp_path / "run/report/report.json").read_text())
    entry = report["classifiers"][0]
    assert entry["n"] == 10 and entry["threat_n"] == {"unconstrained": 10, "in-distribution": 4}
    for threat, m in entry["threat_n"].items():
        for key, acc in entry["robust_accuracy"][threat].items():
            assert entry["robust_accuracy_ci"][threat][key] == pytest.approx(list(proportion_ci(acc, m)))
    text = (tmp_path / "run/report/report.md").read_text()
    assert "n = 10 (in-distribution: first 4)" in text


def test_no_key_leaves_the_stage_config_as_before() -> None:
    import torch

    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import evaluation_stage

    plain = config_from_dict(_config())
    assert "threat_n" not in evaluation_stage(plain, plain.classifiers[0], torch.device("cpu")).config
    cut = config_from_dict(_config(threat_n={"in-distribution": 4}))
    assert evaluation_stage(cut, cut.classifiers[0], torch.device("cpu")).config["threat_n"] == {"in-distribution": 4}


@pytest.mark.parametrize("bad", [{"latent": 4}, {"in-distribution": 0}, {"in-distribution": -3}])
def test_bad_threat_n_is_refused(bad: dict) -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict

    with pytest.raises(UserInputError, match="threat_n"):
        config_from_dict(_config(threat_n=bad))


def test_threat_batch_size_sets_only_its_threats_batches(tmp_path: Path, monkeypatch) -> None:
    import intrinsic_robustness.evaluation as evaluation
    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import run_pipeline

    real, seen = evaluation.evaluate, []

    def spy(*args, **kwargs):
        seen.append((kwargs["threat"], kwargs["n"], kwargs["batch_size"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", spy)
    config = _config(threat_n={"in-distribution": 4}, threat_batch_size={"in-distribution": 3})
    run_pipeline(config_from_dict(config), tmp_path / "run")
    assert sorted(seen) == [("in-distribution", 4, 3), ("unconstrained", 10, 10)]
    assert len(json.loads((tmp_path / "run/eval/c/in-distribution.json").read_text())["min_norms"]) == 4


def test_threat_batch_size_key_appears_in_the_stage_config_only_when_set() -> None:
    import torch

    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import evaluation_stage

    plain = config_from_dict(_config())
    assert "threat_batch_size" not in evaluation_stage(plain, plain.classifiers[0], torch.device("cpu")).config
    cut = config_from_dict(_config(threat_batch_size={"in-distribution": 8}))
    assert evaluation_stage(cut, cut.classifiers[0], torch.device("cpu")).config["threat_batch_size"] == {
        "in-distribution": 8}


@pytest.mark.parametrize("bad", [{"latent": 4}, {"in-distribution": 0}, {"unconstrained": -1}])
def test_bad_threat_batch_size_is_refused(bad: dict) -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict

    with pytest.raises(UserInputError, match="threat_batch_size"):
        config_from_dict(_config(threat_batch_size=bad))
