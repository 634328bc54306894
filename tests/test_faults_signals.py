"""SIGINT, SIGHUP and SIGTERM in long stages (issue 23: Ctrl-C in the PGD training stage exited 0, silently): one line
saying what was kept and how to resume, exit 128 + signal, a state the same command resumes; a second signal exits
at once. Subprocesses run a tiny run whose classifier (user code from test_faults_support) sleeps per forward, so
the signal lands in a known stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_faults_support import TINY_TOML

TESTS = Path(__file__).parent
SLOW_TOML = TINY_TOML.replace('arch = "linear"\nepochs = 1', 'arch = "test_faults_support:slow_linear"\nepochs = 4') \
    .replace("n = 3\nbatch_size = 3", "n = 6\nbatch_size = 2")


def _env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "IROB_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1", **extra}


def _irob(root: Path, **env: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "intrinsic_robustness.cli", "run", str(root / "slow.toml"), "--device", "cpu",
            "--run-dir", str(root / "run"), "--trust-code"]
    return subprocess.Popen(args, cwd=root, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for(proc: subprocess.Popen, ready, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before the signal: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("the stage never started")
        time.sleep(0.02)


def _status(root: Path, stage: str) -> str | None:
    try:
        return json.loads((root / "run" / "meta.json").read_text())["stages"][stage]["status"]
    except (OSError, ValueError, KeyError):
        return None


def _interrupt(root: Path, sig: signal.Signals, ready, **env: str) -> tuple[int, str]:
    proc = _irob(root, **env)
    _wait_for(proc, ready)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def _no_temp_files(root: Path) -> None:
    assert not [p for p in (root / "run").rglob("*.tmp")], "a half-written temp file was left"


def test_signals_in_training_and_evaluation_stages_resume(tmp_path: Path) -> None:
    (tmp_path / "slow.toml").write_text(SLOW_TOML)
    ckpt = tmp_path / "run" / "classifiers" / "std" / "checkpoint.safetensors"
    slow = {"IROB_TEST_SLOW_TRAIN": "0.15", "IROB_TEST_SLOW_EVAL": "0.004"}

    code, err = _interrupt(tmp_path, signal.SIGINT, ckpt.is_file, **slow)  # Ctrl-C after the first epoch
    last = err.strip().splitlines()[-1]
    assert code == 130, err[-2000:]
    assert last.startswith("interrupted by SIGINT during stage classifiers/std: the finished stages are kept"), last
    assert "epochs checkpointed so far" in last and "rerun the same command to resume: irob run" in last, last
    assert "Traceback" not in err
    assert _status(tmp_path, "classifiers/std") == "running" and _status(tmp_path, "dataset") == "done"
    assert ckpt.is_file()
    _no_temp_files(tmp_path)

    def evaluating() -> bool:
        return any((tmp_path / "run" / "eval" / "std").glob("*.partial/batch-*.safetensors"))

    code, err = _interrupt(tmp_path, signal.SIGHUP, evaluating, **slow)  # resumes training, then SIGHUP in eval
    assert code == 129, err[-2000:]
    assert "+ classifiers/std: resumed" in err, err[-2000:]
    assert "interrupted by SIGHUP during stage evaluation/std" in err.strip().splitlines()[-1]
    assert "batches attacked so far" in err.strip().splitlines()[-1]
    _no_temp_files(tmp_path)

    proc = _irob(tmp_path)  # the same command, no slow-down: finishes from the saved batches
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "- classifiers/std: done, unchanged (skipped)" in err and "+ evaluation/std: resumed" in err, err
    assert _status(tmp_path, "report") == "done"
    history = [json.loads(line) for line in (ckpt.parent / "history.jsonl").read_text().splitlines() if line]
    assert len(history) == 4, history  # four epochs in all, none trained twice


def test_sigterm_before_any_stage_work_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "slow.toml").write_text(SLOW_TOML)
    code, err = _interrupt(tmp_path, signal.SIGTERM, lambda: _status(tmp_path, "generator") is not None,
                           IROB_TEST_SLOW_TRAIN="0.15")
    assert code == 143, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted by SIGTERM"), err[-2000:]


SCRIPT = """
import os, signal, sys, time
from intrinsic_robustness.cli.console import stop_on_signals
from intrinsic_robustness.errors import Interrupted
with stop_on_signals():
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
    except Interrupted as exc:
        print("first", exc.signum, flush=True)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again during a slow cleanup
        time.sleep(5)
print("not reached")
"""


def test_second_ctrl_c_exits_at_once() -> None:
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 130, proc.stderr
    assert proc.stdout.split() == ["first", "2"] and "interrupted again by SIGINT" in proc.stderr
    assert time.monotonic() - start < 4.5


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_an_ignored_signal_stays_ignored() -> None:
    """nohup (SIGHUP) and a background job (SIGINT) ignore the signal: irob keeps running as they asked."""
    script = ("import os, signal, time\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
              "from intrinsic_robustness.cli.console import stop_on_signals\n"
              "with stop_on_signals():\n    os.kill(os.getpid(), signal.SIGHUP)\n    time.sleep(0.2)\nprint('alive')\n")
    proc = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip() == "alive", proc.stderr
