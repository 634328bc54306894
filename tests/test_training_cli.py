"""`irob train-classifier` end to end on a tiny affine-generator dataset, and its one-line errors."""

from __future__ import annotations

import json

import torch

from intrinsic_robustness.cli import main
from intrinsic_robustness.data.synthetic import generate_dataset
from intrinsic_robustness.models import load_classifier


def test_train_classifier_cli(tmp_path, affine_generator, capsys):
    generate_dataset(affine_generator, tmp_path / "data", n_train=120, n_test=10, seed=0)
    args = ["train-classifier", "--data", str(tmp_path / "data"), "--method", "trades", "--arch", "mlp-tiny",
            "--eps", "0.2", "--epochs", "2", "--batch-size", "40", "--lr", "0.05", "--num-steps", "3",
            "--device", "cpu", "--out", str(tmp_path / "clf")]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["arch"] == "mlp-tiny" and summary["final"]["epoch"] == 2
    model = load_classifier(tmp_path / "clf")
    assert model(torch.rand(2, 1, 6, 6)).shape == (2, 3)

    assert main(args) == 2  # finished model: refuse without --force
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and "\n" not in err
    assert main([*args, "--force", "--epochs", "1"]) == 0
    capsys.readouterr()

    for bad, needle in [(["--method", "fgsm"], "training method"), (["--arch", "nope"], "unknown"),
                        (["--epochs", "0"], "--epochs"), (["--device", "tpu"], "--device")]:
        i = args.index(bad[0])
        argv = [*args[:i], *bad, *args[i + 2:]]
        assert main([*argv, "--force"]) == 2, bad
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and needle in err and "\n" not in err, err
