"""A tiny end-to-end run through the real library (affine generator, linear classifiers, cheap attacks):
every stage, the report, resume after a crash, and a changed classifier redoing only what depends on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intrinsic_robustness.pipeline.config import config_from_dict

TINY = {
    "run": {"name": "tiny", "seed": 0},
    "generator": {"source": "load", "spec": "affine"},
    "lipschitz": {"methods": ["gradient", "sampling"], "anchors_per_class": 3, "neighbors": 8},
    "dataset": {"n_train": 60, "n_test": 12, "batch_size": 60},
    "classifiers": [
        {"name": "std", "method": "standard", "arch": "linear", "epochs": 2, "batch_size": 20},
        {"name": "adv", "method": "pgd", "arch": "linear", "eps": 0.2, "epochs": 1, "batch_size": 20,
         "options": {"num_steps": 2, "step_size": 0.1, "holdout": 6, "eval_steps": 2}},
    ],
    "evaluation": {"eps": [0.1, 0.3], "n": 9, "batch_size": 9,
                   "attacks": {"unconstrained": ["pgd"], "in-distribution": ["latent"]},
                   "attack_options": {"pgd": {"num_steps": 5, "step_size": 0.1},
                                      "latent": {"search_steps": 1, "num_steps": 5}}},
    "report": {"samples_per_class": 2, "adversarial_examples": 2},
}


def tiny_config(**changes):
    data = json.loads(json.dumps(TINY))
    for section, values in changes.items():
        if section == "classifiers":
            for entry in data["classifiers"]:
                entry.update(values.get(entry["name"], {}))
        else:
            data[section].update(values)
    return config_from_dict(data)


def _statuses(run: Path) -> dict:
    meta = json.loads((run / "meta.json").read_text())
    return {name: (rec["status"], rec.get("finished")) for name, rec in meta["stages"].items()}


def test_tiny_run_end_to_end(tmp_path):
    from intrinsic_robustness.pipeline.stages import run_pipeline

    run = tmp_path / "run"
    outcomes = run_pipeline(tiny_config(), run)
    names = [o.name for o in outcomes]
    assert names == ["generator", "lipschitz/gradient", "lipschitz/sampling", "dataset", "classifiers/std",
                     "classifiers/adv", "evaluation/std", "evaluation/adv", "report"]
    assert all(o.action == "ran" for o in outcomes)
    for rel in ("config.json", "meta.json", "generator/generator.json", "lipschitz/gradient.json",
                "dataset/manifest.json", "classifiers/std/model.safetensors", "eval/adv/in-distribution.json",
                "eval/std/unconstrained.json", "report/report.json", "report/report.md", "report/report.html"):
        assert (run / rel).is_file(), rel
    rep = json.loads((run / "report" / "report.json").read_text())
    # affine generator: the gradient estimate is ||A||_2 for every class (to the estimator's tolerance)
    from intrinsic_robustness.generators import make_affine

    spectral = make_affine().spectral_norm
    assert rep["lipschitz"]["gradient"]["lipschitz"] == pytest.approx([spectral] * 3, rel=1e-3)
    for c in rep["classifiers"]:
        assert 0.0 <= c["natural_accuracy"] <= 1.0
        for threat in ("unconstrained", "in-distribution"):
            assert set(c["robust_accuracy"][threat]) == {"0.1", "0.3"}
            assert all(0.0 <= v <= 1.0 for v in c["robust_accuracy"][threat].values())
        assert set(c["bound"]) == {"gradient", "sampling"}
    html = (run / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "<link" not in html
    # a second run does nothing
    again = run_pipeline(tiny_config(), run)
    assert all(o.action == "skipped" for o in again)


def test_changed_classifier_redoes_only_itself(tmp_path):
    from intrinsic_robustness.pipeline.stages import run_pipeline

    run = tmp_path / "run"
    run_pipeline(tiny_config(), run)
    before = _statuses(run)
    outcomes = run_pipeline(tiny_config(classifiers={"adv": {"epochs": 2}}), run)
    redone = {o.name for o in outcomes if o.action != "skipped"}
    assert redone == {"classifiers/adv", "evaluation/adv", "report"}
    after = _statuses(run)
    assert after["classifiers/std"] == before["classifiers/std"]
    assert after["evaluation/std"] == before["evaluation/std"]


def test_interrupted_run_resumes_without_redoing_finished_stages(tmp_path, monkeypatch):
    import intrinsic_robustness.evaluation as evaluation
    from intrinsic_robustness.pipeline.stages import run_pipeline

    run = tmp_path / "run"
    real = evaluation.evaluate
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the second evaluation
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation, "evaluate", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(tiny_config(), run)
    status = _statuses(run)
    assert status["evaluation/std"][0] == "running" and status["classifiers/adv"][0] == "done"
    monkeypatch.setattr(evaluation, "evaluate", real)
    outcomes = {o.name: o.action for o in run_pipeline(tiny_config(), run)}
    assert outcomes["evaluation/std"] == "resumed"
    assert all(outcomes[n] == "skipped" for n in ("generator", "dataset", "classifiers/std", "classifiers/adv"))
    assert _statuses(run)["classifiers/std"] == status["classifiers/std"]
    assert (run / "report" / "report.html").is_file()


def test_cli_run_and_report(tmp_path, capsys):
    from intrinsic_robustness.cli import main
    from intrinsic_robustness.pipeline.config import config_to_dict
    from intrinsic_robustness.pipeline.configfile import to_toml

    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(config_to_dict(tiny_config())))
    run = tmp_path / "run"
    assert main(["run", str(path), "--run-dir", str(run), "--set", "dataset.n_test=10", "--seed", "1"]) == 0
    assert f"report: {run / 'report' / 'report.html'}" in capsys.readouterr().out.replace("\n", "")
    assert json.loads((run / "config.json").read_text())["run"]["seed"] == 1
    (run / "report" / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "report" / "report.html").is_file()
    assert main(["run", str(path), "--run-dir", str(run), "--force", "nonsense"]) == 2
    assert "--force nonsense: no such stage" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_finishes_under_ten_minutes(tmp_path, capsys):
    """The packaged demo end to end (minutes; run with -m slow on an otherwise idle machine)."""
    import time

    from intrinsic_robustness.cli import main

    start = time.perf_counter()
    assert main(["demo", "--run-dir", str(tmp_path / "demo")]) == 0
    seconds = time.perf_counter() - start
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    rep = json.loads((tmp_path / "demo" / "report" / "report.json").read_text())
    assert rep["generator"]["fidelity"] >= 0.8
    assert seconds < 600


def test_every_lipschitz_method_with_its_own_options_runs(tmp_path):
    """Estimator options that share a name with a run-wide argument (certified-local's ``radius``) reach the
    estimator and never collide with the run's radius; every registered method runs in one pipeline."""
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.lipschitz.registry import ESTIMATORS
    from intrinsic_robustness.pipeline.stages import run_pipeline

    methods = sorted(ESTIMATORS.names())
    config = tiny_config(lipschitz={"methods": methods, "options": {"anchors": 1, "radius": 0.1}})
    run = tmp_path / "run"
    run_pipeline(config, run)
    spectral = make_affine().spectral_norm
    for method in methods:
        saved = json.loads((run / "lipschitz" / f"{method}.json").read_text())
        assert saved["radius"] == pytest.approx(0.1 if method == "certified-local" else 0.5), method
    assert json.loads((run / "report" / "report.json").read_text())["lipschitz"]["certified-local"]["lipschitz"] \
        == pytest.approx([spectral] * 3, rel=1e-4)
