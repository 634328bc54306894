"""A config is checked completely before any stage runs: ``irob run`` and ``irob config show`` refuse every bad
value within 5 seconds, naming its key, and ``irob run`` writes nothing. The base config trains an ACGAN for 50
epochs first, so a value checked only when its stage runs would show up as a stage starting (minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from intrinsic_robustness.cli import main

BASE = """\
[run]
name = "complete"

[generator]
source = "train"
data = "digits"
epochs = 50

[lipschitz]
methods = ["gradient", "sampling"]

[dataset]
n_train = 500
n_test = 100

[[classifiers]]
name = "std"
arch = "linear"

[evaluation]
n = 50
"""

BAD = [
    ('run.device="gpu"', "run.device"),
    ('lipschitz.percentile="p9"', "lipschitz.percentile"),
    ("lipschitz.radius=-1.0", "lipschitz.radius"),
    ('lipschitz.methods=["nope"]', "lipschitz.methods"),
    ("lipschitz.options={foo=1}", "foo"),
    ("lipschitz.options={power_iters=0}", "power_iters"),
    ("evaluation.eps=[0.0]", "evaluation.eps"),
    ("evaluation.eps=[nan]", "evaluation.eps"),
    ('evaluation.attacks={unconstrained=["fgsm"]}', "evaluation.attacks"),
    ('evaluation.compare_attacks=["fgsm"]', "evaluation.compare_attacks"),
    ("evaluation.attack_options={fmn={gamma=2.0}}", "evaluation.attack_options.fmn"),
    ("evaluation.attack_options={autoattack={attacks=[\"nope\"]}}", "evaluation.attack_options.autoattack"),
    ("evaluation.attack_options={latent={bogus=1}}", "evaluation.attack_options.latent.bogus"),
    ("evaluation.options={certify=\"yes\"}", "evaluation.options.certify"),
    ("evaluation.n=1000", "evaluation.n"),
    ('classifiers.std.arch="nope"', "classifiers.0.arch"),
    ('classifiers.std.method="fgsm"', "classifiers.0.method"),
    ("classifiers.std.options={foo=1}", "classifiers.0.options.foo"),
    ("classifiers.std.options={eval_steps=0}", "classifiers.0.options.eval_steps"),
    ("classifiers.std.options={holdout=500}", "classifiers.0.options.holdout"),
    ("generator.options={foo=1}", "generator.options.foo"),
    ("generator.options={hidden=0}", "generator.options.hidden"),
    ('generator.data="cifar"', "generator.data"),
    ("dataset.priors=[0.5, 0.5]", "dataset.priors"),
    ("dataset.priors=[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05]", "dataset.priors: 11 values"),
    ('run.name="../../escaped"', "run.name"),
    ('generator.source="load"', "generator"),
    ('generator.spec="affine"', "generator.options"),  # options given to a loaded generator are never used
]


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "complete.toml"
    path.write_text(BASE)
    return path


@pytest.mark.parametrize("override, key", BAD, ids=[b[0] for b in BAD])
def test_run_and_show_refuse_fast_naming_the_key(override, key, config, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    extra = ["--set", 'generator.source="load"', "--set", "generator.options={width=8}"] if key == "generator.options" \
        else []
    for command in (["run", str(config), "--run-dir", str(tmp_path / "run")], ["config", "show", str(config)]):
        start = time.perf_counter()
        code = main([*command, *extra, "--set", override])
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert key in err[0], err[0]
        assert seconds < 5.0, f"{command[0]}: {seconds:.1f} s"
        assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


def test_a_fresh_process_refuses_within_5_seconds_of_starting(config, tmp_path) -> None:
    """A whole ``irob run`` process on a config whose priors do not fit: its time beyond importing the package
    (torch alone takes seconds on a loaded machine) is under 5 s, and it writes nothing."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def wall(script: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                              timeout=300)
        return time.perf_counter() - start, proc

    imports, _ = wall("import torch, intrinsic_robustness.api, intrinsic_robustness.cli")  # starting up
    cli = "import sys; from intrinsic_robustness.cli import main; sys.exit(main(sys.argv[1:]))"
    seconds, proc = wall(cli, "run", str(config), "--run-dir", str(tmp_path / "run"), "--set",
                         "dataset.priors=[0.5, 0.5]")
    assert proc.returncode == 2, proc.stderr
    assert "dataset.priors: 2 values for a generator with 10 classes" in proc.stderr
    assert seconds - imports < 5.0, f"{seconds:.1f} s in all, {imports:.1f} s of them starting up"
    assert not (tmp_path / "run").exists()
