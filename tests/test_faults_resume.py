"""Resuming after the config changed (issue 23): only the stages whose inputs changed are redone, and the run's
output and meta.json say why each one ran."""

from __future__ import annotations

import json
import re
from pathlib import Path

from intrinsic_robustness.pipeline.changes import why_redo
from test_faults_support import TINY_TOML, cli, write_config


def _lines(err: str) -> dict[str, str]:
    """Stage name -> its line in the run's output (``+ name: ran in ...`` or ``- name: done, unchanged``)."""
    return {m.group(2): m.group(0) for m in re.finditer(r"^([+-]) ([\w/-]+): .*$", err, re.M)}


def test_config_change_redoes_only_the_stages_it_reaches(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    run = tmp_path / "run"
    base = ("run", config, "--device", "cpu", "--run-dir", run)
    code, _, err = cli(capsys, *base)
    assert code == 0, err
    code, _, err = cli(capsys, *base, "--set", "classifiers.std.epochs=2")
    assert code == 0, err
    lines = _lines(err)
    for name in ("generator", "lipschitz/gradient", "dataset"):
        assert lines[name].startswith("- "), lines
    assert "(config changed: epochs 1 -> 2)" in lines["classifiers/std"], lines
    assert "input stage classifiers/std changed" in lines["evaluation/std"], lines
    assert lines["report"].startswith("+ "), lines
    meta = json.loads((run / "meta.json").read_text())
    assert meta["stages"]["classifiers/std"]["reason"] == "config changed: epochs 1 -> 2"
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["stage_reasons"]["classifiers/std"] == "config changed: epochs 1 -> 2"
    code, _, err = cli(capsys, *base, "--set", "classifiers.std.epochs=2")  # nothing changed now
    assert code == 0 and all(line.startswith("- ") for line in _lines(err).values()), err


def test_why_redo_names_what_changed() -> None:
    old = {"status": "done", "key": "k1", "config": {"epochs": 1, "lr": 0.1, "options": {"holdout": 3}},
           "inputs": {"dataset": "f1", "file:w.safetensors": "h1"}}
    new_cfg = {"epochs": 2, "lr": 0.1, "options": {"holdout": 5}}
    assert why_redo(old, new_cfg, old["inputs"], "k2", False) == \
        "config changed: epochs 1 -> 2, options.holdout 3 -> 5"
    assert why_redo(old, old["config"], {"dataset": "f2", "file:w.safetensors": "h2"}, "k3", False) == \
        "input stage dataset changed; file w.safetensors changed"
    assert why_redo(old, old["config"], old["inputs"], "k1", True) == "forced (--force)"
    assert why_redo(None, {}, {}, "k", False) == "first run"
    assert why_redo({**old, "status": "running"}, old["config"], old["inputs"], "k1", False) == \
        "resumed after an interruption"
    many = {f"k{i}": i for i in range(6)}
    assert why_redo({**old, "config": {}}, many, old["inputs"], "k9", False).endswith("and 3 more")


def test_resumed_evaluation_stage_keeps_its_finished_jobs(tmp_path: Path, capsys, monkeypatch) -> None:
    """Interrupted in its second job (in-distribution), the evaluation stage resumes without attacking the
    finished first job (unconstrained) again, and ends with the same files as an uninterrupted run."""
    import intrinsic_robustness.evaluation.run as ev

    config = write_config(tmp_path, TINY_TOML.replace('attacks = {unconstrained = ["pgd"]}',
                                                      'threats = ["unconstrained", "in-distribution"]\n'
                                                      'attacks = {unconstrained = ["pgd"]}\n'
                                                      'attack_options = { latent = { search_steps = 1, '
                                                      'num_steps = 5 } }'))
    original, calls, stop = ev._attack_batch, [], [True]

    def flaky(inp, attack, rows, *args):
        threat = "in-distribution" if inp.generator is not None else "unconstrained"
        calls.append(threat)
        if threat == "in-distribution" and stop[0]:
            stop[0] = False
            raise KeyboardInterrupt
        return original(inp, attack, rows, *args)

    monkeypatch.setattr(ev, "_attack_batch", flaky)
    run = tmp_path / "run"
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run)
    assert code == 130, err
    assert calls == ["unconstrained", "in-distribution"], calls
    saved = (run / "eval" / "std" / "unconstrained.json").read_text()
    calls.clear()
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run)
    assert code == 0, err
    assert calls == ["in-distribution"], calls
    assert (run / "eval" / "std" / "unconstrained.json").read_text() == saved
    monkeypatch.setattr(ev, "_attack_batch", original)
    fresh = tmp_path / "fresh"
    assert cli(capsys, "run", config, "--device", "cpu", "--run-dir", fresh)[0] == 0
    for threat in ("unconstrained", "in-distribution"):
        a, b = (json.loads((r / "eval" / "std" / f"{threat}.json").read_text()) for r in (run, fresh))
        assert a["min_norms"] == b["min_norms"] and a["settings_digest"] == b["settings_digest"], threat
