"""`irob train-generator` and `irob generate`: success output, one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from intrinsic_robustness.cli import main
from intrinsic_robustness.data.synthetic import load_dataset
from intrinsic_robustness.generators.load import load_generator


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_generator_on_digits(tmp_path, capsys):
    out = tmp_path / "acgan"
    code, stdout, _ = run(capsys, "train-generator", "--dataset", "digits", "--epochs", "1", "--out", str(out),
                          "--width", "4", "--hidden", "16", "--latent-dim", "8", "--batch-size", "16",
                          "--max-batches", "2", "--fidelity-epochs", "1", "--device", "cpu")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["epochs_done"] == 1 and 0 <= summary["generated_accuracy"] <= 1
    assert load_generator(str(out)).latent_dim == 8


def test_generate_then_refuse_to_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["generate", "--generator", "affine", "--n-train", "9", "--n-test", "3", "--seed", "0",
            "--out", str(out), "--device", "cpu"]
    code, stdout, _ = run(capsys, *args)
    assert code == 0 and json.loads(stdout)["train"] == [3, 3, 3]
    assert len(load_dataset(out, "test")) == 3
    code, _, stderr = run(capsys, *args)
    assert code == 2 and stderr.startswith("error: ") and "--force" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert run(capsys, *args, "--force")[0] == 0


@pytest.mark.parametrize("args, needle", [
    (["train-generator", "--dataset", "cifar", "--epochs", "1", "--out", "{tmp}/x"], "dataset 'cifar'"),
    (["train-generator", "--dataset", "digits", "--epochs", "0", "--out", "{tmp}/x"], "--epochs 0"),
    (["generate", "--generator", "nope.module:make", "--n-train", "4", "--n-test", "0", "--out", "{tmp}/x"],
     "cannot import"),
    (["generate", "--generator", "affine", "--n-train", "4", "--n-test", "0", "--out", "{tmp}/x",
      "--priors", "0.5,0.5"], "--priors"),
    (["generate", "--generator", "affine", "--n-train", "0", "--n-test", "0", "--out", "{tmp}/x"], "--n-train"),
    (["generate", "--generator", "{tmp}", "--n-train", "4", "--n-test", "0", "--out", "{tmp}/x"],
     "generator.json"),
])
def test_errors_are_one_line_and_leave_nothing(tmp_path, capsys, args, needle):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, stderr = run(capsys, *args, "--device", "cpu")
    assert code == 2, stderr
    assert stderr.startswith("error: ") and needle in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
