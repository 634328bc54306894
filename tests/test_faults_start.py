"""A config error found when the run starts leaves nothing in the run directory (issue 23: `irob run` with
generator.source="train", generator.image_size=10 left meta.json, config.json and the lock behind). The class of
errors, not one example: each config below passes validation; the ACGAN sizes are now caught by the preflight,
the rest when the first stage starts, and either way nothing is left."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_faults_support import cli, one_error, tree, write_config

TRAIN = ('generator.source="train"', "generator.epochs=1")
INVALID = [
    ("ACGAN image size not a multiple of 4", (*TRAIN, "generator.image_size=10"), "multiples of 4"),
    ("ACGAN image size 9", (*TRAIN, "generator.image_size=9"), "multiples of 4"),
    ("generator batch larger than the data", (*TRAIN, "generator.batch_size=100000"), "training images"),
]


def _sets(values: tuple[str, ...]) -> list[str]:
    return [a for v in values for a in ("--set", v)]


@pytest.mark.parametrize("name,sets,needle", INVALID, ids=[c[0] for c in INVALID])
def test_config_error_at_the_start_leaves_no_run_directory(tmp_path: Path, capsys, name: str,
                                                           sets: tuple[str, ...], needle: str) -> None:
    config = write_config(tmp_path)
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", tmp_path / "runs" / "r", *_sets(sets))
    one_error(code, err, needle)
    assert not (tmp_path / "runs").exists(), sorted(p.name for p in (tmp_path / "runs").rglob("*"))


def test_config_error_leaves_an_existing_directory_as_it_was(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("the user's own file\n")
    before = tree(tmp_path)
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run, *_sets(INVALID[0][1]))
    one_error(code, err, "multiples of 4")
    assert tree(tmp_path) == before


def test_any_failure_of_the_first_stage_leaves_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.pipeline import stages

    original = stages.generator_stage

    def failing(*args, **kwargs):
        stage = original(*args, **kwargs)

        def run(ctx):
            raise UserInputError("generator: refused at once for the test")

        stage.run = run
        return stage

    monkeypatch.setattr(stages, "generator_stage", failing)
    code, _, err = cli(capsys, "run", write_config(tmp_path), "--device", "cpu", "--run-dir", tmp_path / "r")
    one_error(code, err, "refused at once")
    assert not (tmp_path / "r").exists()


def test_a_failure_after_work_keeps_the_work(tmp_path: Path, capsys, monkeypatch) -> None:
    """Only scaffolding is removed: once a stage has written its outputs the run directory stays, to resume."""
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.pipeline import stages

    def failing_dataset_stage(*args, **kwargs):
        stage = original(*args, **kwargs)

        def run(ctx):
            raise UserInputError("dataset: refused for the test")

        stage.run = run
        return stage

    original = stages.dataset_stage
    monkeypatch.setattr(stages, "dataset_stage", failing_dataset_stage)
    config = write_config(tmp_path)
    run = tmp_path / "r"
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run)
    one_error(code, err, "refused for the test")
    assert (run / "meta.json").is_file() and (run / "generator" / "generator.json").is_file()
