"""A resumed stage's recorded time is the total across its attempts, not only the resumed part (issue 18)."""

from __future__ import annotations

import time

import pytest

from intrinsic_robustness.pipeline.engine import RunDir, Stage, execute


def test_resumed_stage_records_total_seconds(tmp_path):
    attempts = []

    def work(ctx):
        attempts.append(ctx.fresh)
        time.sleep(0.15)
        if len(attempts) == 1:
            raise KeyboardInterrupt  # the first attempt is interrupted part way
        (ctx.run_dir / "out.txt").write_text("done")
        return ["out.txt"]

    stage = Stage("work", {"a": 1}, work)
    run = RunDir.open(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        execute(run, [stage])
    partial = run.record("work")["partial_seconds"]
    assert partial >= 0.15
    execute(RunDir.open(tmp_path / "run"), [stage])
    record = RunDir.open(tmp_path / "run").record("work")
    assert attempts == [True, False]  # the second attempt resumed
    assert record["status"] == "done"
    assert record["seconds"] == pytest.approx(partial + record["last_attempt_seconds"])
    assert record["seconds"] >= 0.3
