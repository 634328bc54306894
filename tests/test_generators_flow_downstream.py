"""Every downstream stage through a tiny ``flow`` generator (a few hundred parameters, 8x8, 2 steps): the CLI's
train-generator, generate (latents kept, images exactly decode(z, y)), Lipschitz gradient and sampling, the
certified methods' one-line refusal, the in-distribution latent attack, and the pipeline's generator.family."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from intrinsic_robustness.cli import main
from intrinsic_robustness.data.synthetic import load_dataset
from intrinsic_robustness.generators.flow import FlowGenerator
from intrinsic_robustness.generators.load import load_generator, save_generator


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def linear_classifier() -> nn.Module:
    """A seeded linear classifier on 1x8x8 images with 3 classes."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory):
    torch.manual_seed(0)
    gen = FlowGenerator(3, (1, 8, 8), width=2, levels=1, emb_dim=2, steps=2, solver="heun").eval()
    assert sum(p.numel() for p in gen.parameters()) < 1000
    out = tmp_path_factory.mktemp("flow") / "gen"
    save_generator(gen, out, gen.config())
    return out


@pytest.fixture(scope="module")
def flow_data(flow_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("flowdata") / "data"
    assert main(["generate", "--generator", str(flow_dir), "--n-train", "6", "--n-test", "6", "--seed", "0",
                 "--out", str(out), "--device", "cpu"]) == 0
    return out


def dataset_or_skip(name: str, monkeypatch) -> str:
    """``name`` when its real files are here (Debian's Fashion-MNIST package, MNIST under $IROB_DATA), else skip."""
    from tests.test_real_training import MNIST  # the real-data tests' one notion of where MNIST is

    if name == "fashion-mnist" and not FASHION.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)")
    if name == "mnist":
        if not MNIST.is_dir():
            pytest.skip("real MNIST not found (set IROB_DATA to a folder holding mnist/)")
        monkeypatch.setenv("IROB_DATA", str(MNIST.parent.resolve()))
    return name


FASHION = Path("/usr/share/datasets/fashion-mnist")  # where Debian's package puts it (data/real.py looks there)


@pytest.mark.parametrize("dataset", ["digits", "mnist", "fashion-mnist"])
def test_train_generator_cli_flow(tmp_path, capsys, monkeypatch, dataset):
    out = tmp_path / "flow"
    dataset = dataset_or_skip(dataset, monkeypatch)
    code, stdout, _ = run(capsys, "train-generator", "--family", "flow", "--dataset", dataset, "--epochs", "1",
                          "--out", str(out), "--size", "8", "--width", "2", "--levels", "1", "--emb-dim", "2",
                          "--steps", "2", "--solver", "euler", "--batch-size", "32", "--max-batches", "2",
                          "--fidelity-epochs", "1", "--device", "cpu")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["family"] == "flow" and summary["epochs_done"] == 1
    assert json.loads((out / "generator.json").read_text())["trained_on"] == dataset
    assert summary["label_fidelity"] == summary["generated_accuracy"]
    assert summary["frechet_distance"] >= 0 and 0 <= summary["precision"] <= 1 and 0 <= summary["recall"] <= 1
    gen = load_generator(str(out))
    assert gen.latent_dim == 64 and gen.solver == "euler" and gen.steps == 2


@pytest.mark.parametrize("args, needle", [
    (["--family", "flow", "--latent-dim", "8"], "--latent-dim: not an option of --family flow"),
    (["--family", "acgan", "--solver", "heun"], "--solver: not an option of --family acgan"),
    (["--family", "diffusion"], "--family 'diffusion'"),
    (["--family", "flow", "--solver", "rk4"], "solver 'rk4'"),
    (["--family", "flow", "--guidance", "1", "--cond-drop", "0"], "--cond-drop"),
])
def test_train_generator_family_errors(tmp_path, capsys, args, needle):
    code, _, stderr = run(capsys, "train-generator", "--dataset", "digits", "--epochs", "1",
                          "--out", str(tmp_path / "x"), "--size", "8", *args, "--device", "cpu")
    assert code == 2 and stderr.startswith("error: ") and needle in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_generate_keeps_latents_and_exact_images(flow_dir, flow_data):
    gen = load_generator(str(flow_dir))
    data = load_dataset(flow_data, "train")
    x, y, z = (torch.stack([data[i][k] for i in range(len(data))]) for k in range(3))
    assert z.shape == (6, 64)
    with torch.no_grad():
        assert torch.equal(gen.decode(z, y), x)


def test_lipschitz_gradient_and_sampling(flow_dir, tmp_path, capsys):
    for method, extra in (("gradient", ["--power-iters", "3", "--ascent-steps", "1", "--restarts", "1"]),
                          ("sampling", ["--neighbors", "20"])):
        out = tmp_path / f"{method}.json"
        code, _, stderr = run(capsys, "lipschitz", "--generator", str(flow_dir), "--method", method,
                              "--anchors-per-class", "2", *extra, "--out", str(out), "--device", "cpu")
        assert code == 0, stderr
        values = [v for c in json.loads(out.read_text())["per_class"] for v in c["values"]]
        assert len(values) == 6 and all(v > 0 for v in values)


@pytest.mark.parametrize("method", ["certified-global", "certified-local"])
def test_certified_methods_refuse_in_one_line(flow_dir, tmp_path, capsys, method):
    code, _, stderr = run(capsys, "lipschitz", "--generator", str(flow_dir), "--method", method,
                          "--anchors-per-class", "1", "--out", str(tmp_path / "c.json"), "--device", "cpu")
    assert code == 2 and stderr.startswith("error: certified Lipschitz: ") and "ODE" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "c.json").exists()


def test_latent_attack_through_the_sampler(flow_dir, flow_data):
    from intrinsic_robustness.evaluation import evaluate

    fast = {"latent": {"search_steps": 2, "num_steps": 5, "lr": 0.05, "paper_search": False,
                       "line_search_steps": 3}}
    result = evaluate(linear_classifier(), str(flow_data), threat="in-distribution", eps=(1.0,), n=3,
                      generator=load_generator(str(flow_dir)), attack_options=fast)
    assert result.attacks == ["latent"] and result.min_norms.shape == (3,)
    assert bool(((result.min_norms >= 0) | result.min_norms.isnan()).all())


def test_pipeline_config_family():
    from intrinsic_robustness.pipeline.config import GeneratorConfig

    assert GeneratorConfig().family == "acgan"
    section = GeneratorConfig(family="flow", options={"steps": 2, "solver": "midpoint", "width": 4})
    assert section.family == "flow"
    with pytest.raises(ValueError, match="latent_dim"):
        GeneratorConfig(family="flow", options={"latent_dim": 8})
    with pytest.raises(ValueError, match="hidden"):
        GeneratorConfig(family="flow", options={"hidden": 8})
    with pytest.raises(ValueError):
        GeneratorConfig(family="diffusion")


@pytest.mark.parametrize("dataset", ["digits", "fashion-mnist"])
def test_pipeline_trains_a_flow_and_runs_every_stage(tmp_path, monkeypatch, dataset):
    from intrinsic_robustness.pipeline.config import config_from_dict
    from intrinsic_robustness.pipeline.stages import run_pipeline

    config = config_from_dict({
        "run": {"name": "tiny-flow", "seed": 0},
        "generator": {"source": "train", "family": "flow", "data": dataset_or_skip(dataset, monkeypatch),
                      "image_size": 8, "epochs": 1,
                      "batch_size": 32, "min_fidelity": 0.0,
                      "options": {"width": 2, "levels": 1, "emb_dim": 2, "steps": 1, "solver": "euler",
                                  "max_batches": 2, "fidelity_epochs": 1, "fidelity_per_class": 5}},
        "lipschitz": {"methods": ["gradient"], "anchors_per_class": 1,
                      "options": {"power_iters": 2, "ascent_steps": 1, "restarts": 0}},
        "dataset": {"n_train": 40, "n_test": 10, "batch_size": 50},
        "classifiers": [{"name": "std", "method": "standard", "arch": "linear", "epochs": 1, "batch_size": 20}],
        "evaluation": {"eps": [0.5], "n": 2, "batch_size": 2,
                       "attacks": {"unconstrained": ["pgd"], "in-distribution": ["latent"]},
                       "attack_options": {"pgd": {"num_steps": 3, "step_size": 0.1},
                                          "latent": {"search_steps": 1, "num_steps": 3, "paper_search": False}}},
        "report": {"samples_per_class": 1, "adversarial_examples": 1},
    })
    run = tmp_path / "run"
    outcomes = run_pipeline(config, run)
    assert all(o.action == "ran" for o in outcomes)
    assert json.loads((run / "generator" / "generator.json").read_text())["architecture"] == "flow"
    report = json.loads((run / "report" / "report.json").read_text())
    assert report["generator"]["frechet_distance"] >= 0 and "precision" in report["generator"]
    assert "Frechet distance" in (run / "report" / "report.md").read_text()
