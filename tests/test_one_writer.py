"""One writer per output: while another process holds ``--out`` (train-classifier, train-generator, evaluate) or
``--run-dir`` (run), a second one is refused at once with one line naming the holder; a holder killed with
SIGKILL leaves nothing stuck. And killing ``irob run`` in the generator, classifier and evaluation stages
(SIGTERM and SIGKILL) then rerunning it reproduces every number of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from intrinsic_robustness.cli import main

HOLD = """\
import sys, time
from intrinsic_robustness.storage import exclusive
with exclusive(sys.argv[1], "test holder"):
    print("holding", flush=True)
    time.sleep(600)
"""


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [src, str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}


def _holder(directory: Path) -> subprocess.Popen:
    """A child process that takes the lock of ``directory`` and sleeps; returns once it holds it."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True,
                             env=_env())
    assert child.stdout is not None and child.stdout.readline().strip() == "holding"
    return child


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.training import fit

    root = tmp_path_factory.mktemp("writer")
    generate_dataset(make_affine(), root / "ds", 30, 6, seed=0, generator_info={"spec": "affine"})
    fit(load_dataset(root / "ds", "train"), "standard", arch="linear", epochs=1, out=root / "clf")
    (root / "run.toml").write_text('[generator]\nsource = "load"\nspec = "affine"\n[lipschitz]\nmethods = '
                                   '["gradient"]\nanchors_per_class = 1\n[dataset]\nn_train = 12\nn_test = 3\n'
                                   '[[classifiers]]\nname = "s"\narch = "linear"\nepochs = 1\n[evaluation]\n'
                                   'eps = [0.1]\nattacks = {unconstrained = ["pgd"], in-distribution = ["latent"]}\n')
    return root


def _commands(root: Path, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each writing command, and the directory whose lock guards its output."""
    from intrinsic_robustness.evaluation.store import outputs_for

    return {
        "train-classifier": (["train-classifier", "--data", str(root / "ds"), "--method", "standard", "--arch",
                              "linear", "--epochs", "1", "--out", str(out), "--device", "cpu"], out),
        "train-generator": (["train-generator", "--dataset", "digits", "--epochs", "1", "--out", str(out), "--width",
                             "4", "--hidden", "8", "--latent-dim", "4", "--size", "8", "--max-batches", "1",
                             "--fidelity-epochs", "1", "--device", "cpu"], out),
        "evaluate": (["evaluate", "--classifier", str(root / "clf"), "--data", str(root / "ds"), "--threat",
                      "unconstrained", "--attack", "pgd", "--eps", "0.1", "--out", str(out / "e.json"), "--device",
                      "cpu"], outputs_for(out / "e.json")[2]),
        "run": (["run", str(root / "run.toml"), "--run-dir", str(out), "--device", "cpu"], out),
    }


@pytest.mark.parametrize("command", ["train-classifier", "train-generator", "evaluate", "run"])
def test_second_writer_is_refused_naming_the_holder(command, inputs, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    args, lock_dir = _commands(inputs, out)[command]
    child = _holder(lock_dir)
    try:
        start = time.perf_counter()
        code = main(args)
        seconds = time.perf_counter() - start
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
        assert f"in use by pid {child.pid} on " in err[0], err[0]
        assert seconds < 5.0
    finally:
        child.send_signal(signal.SIGKILL)  # a crashed holder: the kernel drops its lock
        child.wait()
    assert main(args) == 0, capsys.readouterr().err  # nothing stuck after a SIGKILL


# ------------------------------------------------------------------------------------------------ kill tests
KILL_TOML = """\
[run]
name = "kill"

[generator]
source = "train"
data = "digits"
epochs = 4
batch_size = 32
latent_dim = 8
image_size = 8
options = {{width = 4, hidden = 16, max_batches = 12, fidelity_epochs = 1, fidelity_per_class = 5}}

[lipschitz]
methods = ["gradient"]
anchors_per_class = 2

[dataset]
n_train = 120
n_test = 60
batch_size = 60

[[classifiers]]
name = "std"
arch = "mlp-tiny"
epochs = {classifier_epochs}
batch_size = 12
options = {{eval_steps = 3}}

[evaluation]
eps = [0.3, 0.6]
batch_size = 3
attacks = {{unconstrained = ["pgd"], in-distribution = ["latent"]}}
attack_options = {{pgd = {{num_steps = 20, step_size = 0.1}}, latent = {{search_steps = 2, num_steps = 15}}}}

[report]
samples_per_class = 1
adversarial_examples = 1
"""


def _start(config: Path, run_dir: Path) -> subprocess.Popen:
    script = "import sys; from intrinsic_robustness.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", script, "run", str(config), "--run-dir", str(run_dir), "--device",
                             "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())


def _kill_during(config: Path, run_dir: Path, stage: str, sig: int) -> str:
    """Start the run, signal it once ``stage`` has been running a moment; returns the stage's recorded status."""
    proc = _start(config, run_dir)
    meta = run_dir / "meta.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            record = json.loads(meta.read_text())["stages"].get(stage, {})
        except (OSError, ValueError, KeyError):
            record = {}
        if record.get("status") == "running":
            time.sleep(0.2)
            proc.send_signal(sig)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=300) != 0, f"the run ended before it could be killed in {stage}: {proc.stderr.read()}"
    return json.loads(meta.read_text())["stages"][stage]["status"]


def _numbers(run_dir: Path) -> dict[str, object]:
    """Every number the run's robustness claims rest on."""
    out: dict[str, object] = {}
    for path in sorted((run_dir / "eval").rglob("*.json")):
        data = json.loads(path.read_text())
        out[str(path.relative_to(run_dir))] = {k: data[k] for k in ("natural_error", "robust_accuracy", "min_norms")}
    out["lipschitz"] = json.loads((run_dir / "lipschitz" / "gradient.json").read_text())["per_class"]
    out["dataset"] = json.loads((run_dir / "dataset" / "manifest.json").read_text())["splits"]
    return out


@pytest.mark.slow  # a reference run and two interrupted ones: about 2 min on a busy 2-core machine
def test_killed_runs_resume_and_reproduce_every_number(tmp_path) -> None:
    config = tmp_path / "kill.toml"
    config.write_text(KILL_TOML.format(classifier_epochs=60))
    reference = tmp_path / "reference"
    proc = _start(config, reference)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    expected = _numbers(reference)
    for name, sig in (("sigterm", signal.SIGTERM), ("sigkill", signal.SIGKILL)):
        run_dir = tmp_path / name
        for stage in ("generator", "classifiers/std", "evaluation/std"):
            assert _kill_during(config, run_dir, stage, sig) == "running"
        proc = _start(config, run_dir)
        assert proc.wait(timeout=600) == 0, proc.stderr.read()
        assert _numbers(run_dir) == expected, name
