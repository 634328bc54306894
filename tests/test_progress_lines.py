"""Progress outside a terminal: plain log lines (a batch job's log would otherwise stay empty until the end)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess

import pytest

from intrinsic_robustness import progress
from intrinsic_robustness.cli.console import LineProgressHook, progress_hook


def test_line_hook_writes_start_periodic_and_end_lines() -> None:
    stream = io.StringIO()
    previous = progress.set_progress_hook(LineProgressHook(stream, interval=0.0))
    try:
        assert list(progress.track(range(4), "epochs")) == [0, 1, 2, 3]
        with progress.task("open-ended") as handle:
            progress.advance(handle, 7)
    finally:
        progress.set_progress_hook(previous)
    lines = stream.getvalue().splitlines()
    assert "epochs: started (4 steps)" in lines[0]
    assert any("epochs 2/4 (50%)" in line and "left" in line for line in lines)
    assert any("epochs 4/4 (100%)" in line and "in total" in line for line in lines)
    assert any("open-ended 7 done" in line for line in lines)


@pytest.mark.parametrize("interval", [3600.0, 1e9])
def test_a_long_interval_keeps_only_start_and_end(interval: float) -> None:
    stream = io.StringIO()
    hook = LineProgressHook(stream, interval=interval)
    handle = hook.start("anchors", 1000)
    for _ in range(1000):
        hook.advance(handle)
    hook.finish(handle)
    assert len(stream.getvalue().splitlines()) == 2


@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan", ""])
def test_bad_interval_is_a_user_error(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from intrinsic_robustness.errors import UserInputError

    monkeypatch.setenv("IROB_PROGRESS_SECONDS", raw)
    with pytest.raises(UserInputError, match="IROB_PROGRESS_SECONDS"):
        progress_hook()


def test_cli_in_a_pipe_logs_progress_lines(tmp_path) -> None:
    """``irob lipschitz`` with stderr to a pipe: progress arrives as lines, stdout stays empty of it."""
    irob = shutil.which("irob")
    if irob is None:
        pytest.skip("the irob command is not installed (pip install -e .)")
    env = {**os.environ, "IROB_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([irob, "lipschitz", "--generator", "affine", "--method", "gradient", "--anchors-per-class",
                          "3", "--device", "cpu", "--out", str(tmp_path / "l.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "started" in run.stderr and "in total" in run.stderr
    assert "started" not in run.stdout
    assert (tmp_path / "l.json").is_file()
