"""A user's own code and other people's files.

Item 1: a ``module:factory`` generator written exactly to the documented contract (``sample_latent(n,
generator=None)``, no ``device``) works in ``irob generate``, ``irob lipschitz`` (every registered method),
``irob evaluate --threat in-distribution`` and ``irob run``. Item 3: a file (a saved generator or classifier,
a dataset manifest, a pipeline config, a run directory) that names code never runs it without
``--trust-code``: each payload below would leave a marker file, and the marker must not appear.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from intrinsic_robustness.cli import main

SPEC = "_user_code:contract_generator"
SRC = Path(__file__).resolve().parents[1] / "src" / "intrinsic_robustness"

RUN_TOML = """\
[run]
name = "user"

[generator]
source = "load"
spec = "{spec}"

[lipschitz]
methods = {methods}
anchors_per_class = 2
neighbors = 8

[dataset]
n_train = 24
n_test = 6
batch_size = 24

[[classifiers]]
name = "std"
arch = "linear"
epochs = 1
batch_size = 8

[evaluation]
eps = [0.1]
n = 3
batch_size = 3
attacks = {{unconstrained = ["pgd"], in-distribution = ["latent"]}}
attack_options = {{pgd = {{num_steps = 3}}, latent = {{search_steps = 1, num_steps = 3}}}}

[report]
samples_per_class = 1
adversarial_examples = 1
"""


@pytest.fixture(autouse=True)
def _user_code_importable(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("IROB_TEST_MARKER", str(tmp_path / "MARKER"))


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(code: int, err: str, needle: str) -> bool:
    lines = err.strip().splitlines()
    return code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


def test_the_library_calls_sample_latent_only_through_the_contract() -> None:
    """Every ``.sample_latent(`` call in the package is the one in ``generators/protocol.py``, with the contract's
    arguments only (no ``device=``); nothing else guesses a generator's device from its parameters."""
    calls = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "sample_latent":
                calls.append((path.relative_to(SRC).as_posix(), [k.arg for k in node.keywords]))
    assert calls == [("generators/protocol.py", ["generator"])]
    guesses = sorted({p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py") for line in p.read_text().splitlines()
                      if ("parameters()" in line or "buffers()" in line) and ".device" in line})
    assert guesses == [], guesses  # devices come from runtime.module_device, the one place that looks


def test_contract_generator_in_generate_lipschitz_evaluate(tmp_path, capsys) -> None:
    from intrinsic_robustness.lipschitz import ESTIMATORS

    data, clf = tmp_path / "ds", tmp_path / "clf"
    assert cli(capsys, "generate", "--generator", SPEC, "--n-train", "12", "--n-test", "6", "--out", data,
               "--device", "cpu")[0] == 0
    for method in ESTIMATORS.names():
        out = tmp_path / f"{method}.json"
        code, _, err = cli(capsys, "lipschitz", "--generator", SPEC, "--method", method, "--anchors-per-class", "2",
                           "--out", out, "--device", "cpu")
        assert code == 0, err
        values = json.loads(out.read_text())
        assert values["method"] == method and len(values["per_class"]) == 3
    assert cli(capsys, "train-classifier", "--data", data, "--method", "standard", "--arch", "linear", "--epochs",
               "1", "--out", clf, "--device", "cpu")[0] == 0
    common = ("evaluate", "--classifier", clf, "--data", data, "--threat", "in-distribution", "--attack", "latent",
              "--device", "cpu")
    code, _, err = cli(capsys, *common, "--out", tmp_path / "e1.json", "--generator", SPEC)  # named by the user
    assert code == 0, err
    code, _, err = cli(capsys, *common, "--out", tmp_path / "e2.json")  # named by the manifest: a file
    assert refused(code, err, f"manifest.json: names code '{SPEC}'"), err
    code, _, err = cli(capsys, *common, "--out", tmp_path / "e2.json", "--trust-code")
    assert code == 0, err
    first, second = (json.loads((tmp_path / f"e{i}.json").read_text()) for i in (1, 2))
    assert first["robust_accuracy"] == second["robust_accuracy"] and first["min_norms"] == second["min_norms"]


def test_contract_generator_in_a_pipeline_run(tmp_path, capsys) -> None:
    from intrinsic_robustness.lipschitz import ESTIMATORS

    config = tmp_path / "user.toml"
    config.write_text(RUN_TOML.format(spec=SPEC, methods=json.dumps(list(ESTIMATORS.names()))))
    run_dir = tmp_path / "run"
    code, _, err = cli(capsys, "run", config, "--run-dir", run_dir, "--device", "cpu")
    assert refused(code, err, f"generator.spec: names code '{SPEC}'"), err
    assert not run_dir.exists()
    assert cli(capsys, "config", "show", config)[0] == 0  # showing a config runs no code
    code, _, err = cli(capsys, "run", config, "--run-dir", run_dir, "--device", "cpu", "--trust-code")
    assert code == 0, err
    report = json.loads((run_dir / "report" / "report.json").read_text())
    assert set(report["lipschitz"]) == set(ESTIMATORS.names())
    assert (run_dir / "eval" / "std" / "in-distribution.json").is_file()


# --------------------------------------------------------------------------------------- files never run code
def _evil_generator_dir(path: Path, payload: dict) -> Path:
    path.mkdir()
    (path / "generator.json").write_text(json.dumps({"format": "irob-generator/1", "architecture": "factory",
                                                     **payload}))
    return path


def test_saved_generator_naming_code_runs_only_with_trust_code(tmp_path, capsys) -> None:
    marker = tmp_path / "MARKER"
    system = _evil_generator_dir(tmp_path / "system", {"factory": "os:system",
                                                       "kwargs": {"command": f"touch {marker}"}})
    payload = _evil_generator_dir(tmp_path / "payload", {"factory": "_user_code:payload_generator",
                                                         "kwargs": {"marker": str(marker)}})
    for directory in (system, payload):
        for args in (("generate", "--generator", directory, "--n-train", "3", "--n-test", "3", "--out",
                      tmp_path / "ds"),
                     ("lipschitz", "--generator", directory, "--anchors-per-class", "1", "--out", tmp_path / "l.json")):
            code, _, err = cli(capsys, *args, "--device", "cpu")
            assert refused(code, err, "names code"), err
            assert f"{directory / 'generator.json'}: names code '" in err and "--trust-code" in err
            assert not marker.exists() and not (tmp_path / "ds").exists() and not (tmp_path / "l.json").exists()
    # the same file, trusted: the code runs (the marker proves the flag is what stood in the way)
    from intrinsic_robustness.generators.load import load_generator

    with pytest.raises(Exception, match="generator.safetensors"):  # the file has no weights: code ran, then this
        load_generator(str(payload), trust_code=True)
    assert marker.exists()


def test_classifier_config_naming_code_runs_only_with_trust_code(tmp_path, capsys) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.models import save_classifier

    marker = tmp_path / "MARKER"
    generate_dataset(make_affine(), tmp_path / "ds", 3, 6, seed=0, generator_info={"spec": "affine"})
    save_classifier(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3)), tmp_path / "clf",
                    {"arch": "_user_code:payload_classifier", "num_classes": 3, "image_shape": [1, 6, 6]})
    args = ("evaluate", "--classifier", tmp_path / "clf", "--data", tmp_path / "ds", "--threat", "unconstrained",
            "--attack", "pgd", "--eps", "0.1", "--device", "cpu", "--out", tmp_path / "e.json")
    code, _, err = cli(capsys, *args)
    assert refused(code, err, "config.json: names code '_user_code:payload_classifier'"), err
    assert not marker.exists() and not (tmp_path / "e.json").exists()
    code, _, err = cli(capsys, *args, "--trust-code")
    assert code == 0, err
    assert marker.exists()


def test_manifest_naming_code(tmp_path, capsys) -> None:
    """evaluate reloads the generator a manifest names; train-classifier never loads it (no code, no flag)."""
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.generators import make_affine

    marker = tmp_path / "MARKER"
    gen = make_affine()
    generate_dataset(gen, tmp_path / "ds", 12, 6, seed=0, generator_info={"spec": "os:system", "weights": None})
    evil_dir = _evil_generator_dir(tmp_path / "evil", {"factory": "os:system",
                                                       "kwargs": {"command": f"touch {marker}"}})
    generate_dataset(gen, tmp_path / "ds2", 12, 6, seed=0, generator_info={"spec": str(evil_dir)})
    assert cli(capsys, "train-classifier", "--data", tmp_path / "ds", "--method", "standard", "--arch", "linear",
               "--epochs", "1", "--out", tmp_path / "clf", "--device", "cpu")[0] == 0
    for data in ("ds", "ds2"):
        code, _, err = cli(capsys, "evaluate", "--classifier", tmp_path / "clf", "--data", tmp_path / data,
                           "--threat", "in-distribution", "--attack", "latent", "--out", tmp_path / "e.json",
                           "--device", "cpu")
        assert refused(code, err, "names code 'os:system'"), err
        assert not marker.exists() and not (tmp_path / "e.json").exists()
        assert not (tmp_path / "e.json.partial").exists()


def test_run_directory_and_config_naming_code(tmp_path, capsys) -> None:
    """A finished run whose generator.json was edited to name code: a rerun that reloads it refuses; the
    report (which never loads a model) runs no code either. A config naming a classifier factory needs
    --trust-code too."""
    marker = tmp_path / "MARKER"
    config = tmp_path / "builtin.toml"
    config.write_text(RUN_TOML.format(spec="affine", methods='["gradient"]'))
    run_dir = tmp_path / "run"
    code, _, err = cli(capsys, "run", config, "--run-dir", run_dir, "--device", "cpu")
    assert code == 0, err
    saved = run_dir / "generator" / "generator.json"
    saved.write_text(json.dumps({"format": "irob-generator/1", "architecture": "factory", "factory": "os:system",
                                 "kwargs": {"command": f"touch {marker}"}}))
    code, _, err = cli(capsys, "run", config, "--run-dir", run_dir, "--device", "cpu", "--force", "lipschitz")
    last = err.strip().splitlines()[-1]  # stages before it report progress first
    assert code == 2 and last.startswith(f"error: {saved}: names code 'os:system'"), err
    assert cli(capsys, "report", run_dir)[0] == 0
    assert not marker.exists()
    code, _, err = cli(capsys, "run", config, "--run-dir", tmp_path / "other", "--device", "cpu", "--set",
                       'classifiers.std.arch="_user_code:payload_classifier"')
    assert refused(code, err, "classifiers.0.arch: names code '_user_code:payload_classifier'"), err
    assert not marker.exists() and not (tmp_path / "other").exists()


def test_library_defaults_refuse_and_user_specs_are_allowed(tmp_path) -> None:
    """The Python API keeps the same rule: trust_code=False by default, a spec the caller names is its choice."""
    from intrinsic_robustness.generators.load import load_generator
    from intrinsic_robustness.plugins import UntrustedCode

    gen = load_generator(SPEC)  # the caller's own spec
    assert gen.latent_dim == 4
    with pytest.raises(UntrustedCode, match="names code"):
        load_generator(SPEC, named_by="somebody's manifest.json")
    assert load_generator(SPEC, named_by="somebody's manifest.json", trust_code=True).num_classes == 3
