"""evaluate() and `irob evaluate`: JSON contract, consistency of the summary with the per-example norms,
batch-split invariance, resume after an interruption, manifest generator lookup, one-line errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
from intrinsic_robustness.evaluation import evaluate, load_norms
from intrinsic_robustness.generators import make_affine

AFFINE_SPEC = "affine"  # a built-in name: a manifest naming a factory would need trust_code=True
KEYS = ["format", "threat", "attacks", "n", "natural_error", "class_errors", "min_norms", "robust_accuracy",
        "natural_accuracy", "natural_accuracy_ci", "robust_accuracy_ci", "confidence", "seconds", "settings_digest"]
FAST = {"fmn": {"num_steps": 30}, "pgd": {"num_steps": 10, "step_size": 0.1}}
FAST_LATENT = {"latent": {"search_steps": 2, "num_steps": 15, "lr": 0.05}}


def nearest_mean_classifier() -> nn.Module:
    """A linear classifier for the default affine generator (decides by the nearest class offset)."""
    offsets = make_affine().offsets
    mean = offsets.mean(dim=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(offsets.shape[1], offsets.shape[0]))
    with torch.no_grad():
        model[1].weight.copy_(4 * (offsets - mean))
        model[1].bias.copy_(-2 * ((offsets**2).sum(dim=1) - (mean**2).sum()))
    return model


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "data"
    generate_dataset(make_affine(), out, n_train=4, n_test=14, seed=0,
                     generator_info={"spec": AFFINE_SPEC, "weights": None})
    return out


def test_json_contract_and_summary_consistency(dataset_dir, tmp_path) -> None:
    out = tmp_path / "unc.json"
    model = nearest_mean_classifier()
    result = evaluate(model, str(dataset_dir), threat="unconstrained", attacks="fmn,pgd", eps=(0.3, 0.2),
                      batch_size=5, out=out, attack_options=FAST)
    data = json.loads(out.read_text())
    assert list(data) == KEYS
    assert data["threat"] == "unconstrained" and data["attacks"] == ["fmn", "pgd"] and data["n"] == 14
    norms = torch.tensor([math.inf if v is None else v for v in data["min_norms"]])
    ds = load_dataset(dataset_dir)
    with torch.no_grad():
        wrong = model(ds.images).argmax(dim=1) != ds.labels
    assert data["natural_error"] == pytest.approx(float(wrong.double().mean()))
    for k in range(3):
        assert data["class_errors"][k] == pytest.approx(float(wrong[ds.labels == k].double().mean()))
    assert set(data["robust_accuracy"]) == {"0.2", "0.3"}
    for key, value in data["robust_accuracy"].items():
        assert value == pytest.approx(float((norms > float(key) + 1e-5).double().mean()))
    assert (norms[wrong] == 0).all()
    saved = load_norms(out)
    assert torch.allclose(saved["min_norms"], result.min_norms)
    assert saved["x"].shape == saved["x_adv"].shape == (14, 1, 6, 6)
    assert not out.with_name(out.name + ".partial").exists()


def test_batch_split_does_not_change_answers(dataset_dir) -> None:
    model = nearest_mean_classifier()
    a = evaluate(model, str(dataset_dir), attacks="fmn,pgd", eps=(0.3,), batch_size=14, seed=3,
                 attack_options=FAST)
    b = evaluate(model, str(dataset_dir), attacks="fmn,pgd", eps=(0.3,), batch_size=4, seed=3,
                 attack_options=FAST)
    assert torch.allclose(a.min_norms, b.min_norms, rtol=1e-4, atol=1e-6)


def test_resume_after_interruption(dataset_dir, tmp_path, monkeypatch) -> None:
    import intrinsic_robustness.evaluation.run as ev

    model = nearest_mean_classifier()
    kwargs = dict(threat="in-distribution", generator=make_affine(), eps=(0.5,), batch_size=5,
                  attack_options=FAST_LATENT)
    out = tmp_path / "ind.json"
    reference = evaluate(model, str(dataset_dir), **kwargs)
    original, calls = ev._attack_batch, []

    def flaky(inp, attack, rows, *args):
        calls.append(rows.start)
        if rows.start == 10 and len(calls) < 4:
            raise KeyboardInterrupt
        return original(inp, attack, rows, *args)

    monkeypatch.setattr(ev, "_attack_batch", flaky)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, str(dataset_dir), out=out, **kwargs)
    assert sorted(p.name for p in out.with_name(out.name + ".partial").glob("batch-*")) == \
        ["batch-00000.safetensors", "batch-00001.safetensors"]
    resumed = evaluate(model, str(dataset_dir), out=out, **kwargs)
    assert calls == [0, 5, 10, 10], "finished batches were attacked again"
    assert torch.allclose(resumed.min_norms, reference.min_norms, rtol=1e-4, atol=1e-6, equal_nan=True)
    assert json.loads(out.read_text())["threat"] == "in-distribution"


def test_reuse_loads_a_finished_output_only_with_the_same_settings(dataset_dir, tmp_path, monkeypatch) -> None:
    """The pipeline's resume: a finished output with the same fingerprint is loaded; any other setting, or no
    ``reuse``, attacks again."""
    import intrinsic_robustness.evaluation.run as ev

    model = nearest_mean_classifier()
    out = tmp_path / "done.json"
    first = evaluate(model, str(dataset_dir), attacks="fmn", eps=(0.5,), batch_size=4, out=out)
    assert json.loads(out.read_text())["settings_digest"]
    original, calls = ev._attack_batch, []

    def counted(inp, attack, rows, *args):
        calls.append(rows.start)
        return original(inp, attack, rows, *args)

    monkeypatch.setattr(ev, "_attack_batch", counted)
    again = evaluate(model, str(dataset_dir), attacks="fmn", eps=(0.5,), batch_size=4, out=out, reuse=True)
    assert calls == [] and torch.equal(again.min_norms, first.min_norms)
    assert again.robust_accuracy == first.robust_accuracy and again.n == first.n
    evaluate(model, str(dataset_dir), attacks="fmn", eps=(0.5, 1.0), batch_size=4, out=out, reuse=True)
    assert calls, "other settings must be attacked again"
    calls.clear()
    evaluate(model, str(dataset_dir), attacks="fmn", eps=(0.5, 1.0), batch_size=4, out=out)
    assert calls, "without reuse the output is recomputed"


def test_in_distribution_norms_bound_unconstrained_ones(dataset_dir) -> None:
    model = nearest_mean_classifier()
    ind = evaluate(model, str(dataset_dir), threat="in-distribution", eps=(0.5,), attack_options=FAST_LATENT)
    unc = evaluate(model, str(dataset_dir), attacks="fmn", eps=(0.5,), attack_options={"fmn": {"num_steps": 60}})
    assert ind.attacks == ["latent"]
    assert (unc.min_norms <= ind.min_norms + 1e-5).all()


def test_cli_evaluate_uses_manifest_generator_and_reports_errors(dataset_dir, tmp_path, capsys) -> None:
    from intrinsic_robustness.cli import main

    out = tmp_path / "cli.json"
    code = main(["evaluate", "--classifier", "test_evaluation:nearest_mean_classifier", "--data", str(dataset_dir),
                 "--threat", "in-distribution", "--eps", "0.5", "--eps", "1.0", "--n", "3", "--batch-size", "2",
                 "--device", "cpu", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    data = json.loads(out.read_text())
    assert data["n"] == 3 and data["attacks"] == ["latent"] and set(data["robust_accuracy"]) == {"0.5", "1"}
    code = main(["evaluate", "--classifier", "test_evaluation:nearest_mean_classifier", "--data", str(dataset_dir),
                 "--threat", "sideways", "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err
    assert code == 2 and "error:" in err and "--threat" in err
    code = main(["evaluate", "--classifier", "test_evaluation:nearest_mean_classifier", "--data", str(dataset_dir),
                 "--threat", "unconstrained", "--attack", "latent", "--out", str(tmp_path / "y.json")])
    assert code == 2 and "not an unconstrained attack" in capsys.readouterr().err


def test_wrong_generator_is_rejected(dataset_dir) -> None:
    from intrinsic_robustness.errors import UserInputError

    with pytest.raises(UserInputError, match="generator"):
        evaluate(nearest_mean_classifier(), str(dataset_dir), threat="in-distribution",
                 generator=make_affine(seed=7), attack_options=FAST_LATENT, n=2)


def test_certified_radii_lower_bound_the_attack_norms(dataset_dir, tmp_path) -> None:
    from intrinsic_robustness.models import save_classifier

    model = nearest_mean_classifier()
    directory = tmp_path / "clf"
    save_classifier(model, directory, {"arch": "linear", "num_classes": 3, "image_shape": [1, 6, 6],
                                       "method": "certified"})
    result = evaluate(str(directory), str(dataset_dir), attacks="fmn", eps=(0.2, 0.4),
                      attack_options={"fmn": {"num_steps": 60}}, n=8)
    assert result.certified_radii is not None
    finite = torch.isfinite(result.min_norms)
    # Sound: no certificate beyond a found adversarial point; tight for a linear model (bisection tol 0.01).
    assert (result.certified_radii[finite] <= result.min_norms[finite] + 1e-5).all()
    assert (result.certified_radii[finite] >= torch.clamp(result.min_norms[finite], max=0.4) - 0.02).all()
    for key, value in result.certified_accuracy.items():
        assert value <= result.robust_accuracy[key]
    assert "certified_accuracy" in result.to_dict()


def test_external_images_are_inverted_with_reported_error(dataset_dir) -> None:
    ds = load_dataset(dataset_dir)
    result = evaluate(nearest_mean_classifier(), (ds.images[:3], ds.labels[:3]), generator=make_affine(),
                      threat="in-distribution", eps=(0.5,), attack_options=FAST_LATENT,
                      inversion={"steps": 200, "restarts": 1, "lr": 0.05})
    data = result.to_dict()
    assert result.reconstruction_error is not None and len(result.reconstruction_error) == 3
    assert data["reconstruction_error"]["max"] < 0.02  # the images come from this generator
