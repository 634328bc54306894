"""Issue 18's crashes and rules: one eps key for every accuracy, certified training refused on sizes the dual
bound cannot follow, and intervals beside every accuracy `irob evaluate` reports."""

from __future__ import annotations

import json

import pytest
import torch

from intrinsic_robustness.certify import check_certifiable
from intrinsic_robustness.cli import main
from intrinsic_robustness.data.synthetic import generate_dataset
from intrinsic_robustness.evaluation.result import EvalResult
from intrinsic_robustness.evaluation.store import outputs_for
from intrinsic_robustness.models.architectures import wk_small
from intrinsic_robustness.stats import clopper_pearson
from intrinsic_robustness.threat import eps_key


@pytest.fixture
def certified_clf(tmp_path, capsys):
    assert main(["generate", "--generator", "affine", "--out", str(tmp_path / "data"), "--n-train", "90",
                 "--n-test", "12"]) == 0
    args = ["train-classifier", "--data", str(tmp_path / "data"), "--method", "certified", "--arch", "mlp-tiny",
            "--eps", "0.3", "--epochs", "1", "--batch-size", "30", "--device", "cpu", "--out", str(tmp_path / "clf")]
    assert main(args) == 0
    capsys.readouterr()
    return tmp_path


@pytest.mark.parametrize("eps", [["1"], ["0.5", "1", "1.5", "2"], ["0.25", "3.0"]])
@pytest.mark.parametrize("threat", ["unconstrained", "in-distribution"])
def test_certified_evaluation_whole_and_fractional_eps(certified_clf, capsys, eps, threat):
    out = certified_clf / f"eval-{threat}-{len(eps)}"
    args = ["evaluate", "--classifier", str(certified_clf / "clf"), "--data", str(certified_clf / "data"),
            "--threat", threat, "--attack", "pgd" if threat == "unconstrained" else "latent", "--n", "6",
            "--device", "cpu", "--out", str(out)]
    for e in eps:
        args += ["--eps", e]
    assert main(args) == 0, capsys.readouterr().err
    data = _json(out)
    keys = {eps_key(float(e)) for e in eps}
    assert set(data["robust_accuracy"]) == keys
    if "certified_accuracy" in data:  # certified radii are a property of the model, both threats keep them
        assert set(data["certified_accuracy"]) == keys == set(data["certified_accuracy_ci"])
    assert set(data["robust_accuracy_ci"]) == keys
    loaded = EvalResult.load(out)
    assert set(loaded.robust_accuracy) == keys


def test_old_certified_keys_are_read_with_the_one_key(tmp_path, certified_clf, capsys):
    out = certified_clf / "ev"
    assert main(["evaluate", "--classifier", str(certified_clf / "clf"), "--data", str(certified_clf / "data"),
                 "--threat", "unconstrained", "--attack", "pgd", "--eps", "1", "--device", "cpu",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    path = outputs_for(out)[0]
    data = json.loads(path.read_text())
    assert "certified_accuracy" in data
    data["certified_accuracy"] = {"1.0": data["certified_accuracy"]["1"]}  # as files before the fix wrote it
    path.write_text(json.dumps(data))
    assert set(EvalResult.load(out).certified_accuracy) == {"1"}


@pytest.mark.parametrize("size", [5, 6, 7, 9, 10, 13, 27])
def test_certified_refuses_sizes_the_dual_bound_cannot_follow(size):
    with pytest.raises(Exception) as info:
        check_certifiable(wk_small(10, (1, size, size)), (1, size, size))
    message = str(info.value)
    assert "sizes that work" in message and "28x28" in message and "\n" not in message


@pytest.mark.parametrize("size", [8, 12, 28])
def test_certified_sizes_that_work_really_work(size):
    from intrinsic_robustness.certify import dual_bound_loss

    model = wk_small(10, (1, size, size))
    check_certifiable(model, (1, size, size))
    loss = dual_bound_loss(model, torch.rand(2, 1, size, size), torch.tensor([0, 1]), 0.1)
    assert torch.isfinite(torch.as_tensor(loss)).all()


def test_certified_on_6x6_cli_is_one_line(tmp_path, affine_generator, capsys):
    generate_dataset(affine_generator, tmp_path / "data", n_train=40, n_test=8, seed=0)
    code = main(["train-classifier", "--data", str(tmp_path / "data"), "--method", "certified",
                 "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "clf")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and "6x6" in err and "\n" not in err
    assert not (tmp_path / "clf").exists() or not any((tmp_path / "clf").iterdir())


def test_evaluate_json_intervals_are_clopper_pearson(certified_clf, capsys):
    out = certified_clf / "ev-ci"
    assert main(["evaluate", "--classifier", str(certified_clf / "clf"), "--data", str(certified_clf / "data"),
                 "--threat", "unconstrained", "--attack", "pgd", "--eps", "0.5", "--eps", "1",
                 "--device", "cpu", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    data = _json(out)
    n = data["n"]
    k = round(data["natural_accuracy"] * n)
    assert data["natural_accuracy_ci"] == pytest.approx(list(clopper_pearson(k, n)))
    for key, value in data["robust_accuracy"].items():
        assert data["robust_accuracy_ci"][key] == pytest.approx(list(clopper_pearson(round(value * n), n)))
    for key, value in data["certified_accuracy"].items():
        assert data["certified_accuracy_ci"][key] == pytest.approx(list(clopper_pearson(round(value * n), n)))
    assert "95%" in shown


def _json(out):
    return json.loads(outputs_for(out)[0].read_text())
