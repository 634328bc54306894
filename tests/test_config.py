"""Pipeline config: validation with one-line errors naming the key, ``--set`` overrides, shipped configs."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.pipeline.config import config_from_dict, config_to_dict, load_config
from intrinsic_robustness.pipeline.configfile import apply_overrides, to_toml

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"classifiers": [{"name": "std"}]}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_defaults_filled_in():
    cfg = config_from_dict(MINIMAL)
    assert cfg.run.seed == 0 and cfg.generator.source == "train"
    assert cfg.evaluation.threats == ["unconstrained", "in-distribution"]
    assert cfg.classifiers[0].method == "standard"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"classifiers": [{"name": "a", "epochz": 3}]}, "classifiers.0.epochz: unknown key"),
        ({"classifiers": [{"name": "a", "method": "magic"}]}, "classifiers.0.method"),
        ({"classifiers": [{"name": "a"}, {"name": "a"}]}, "repeated: ['a']"),
        ({"classifiers": [{"name": "a/b"}]}, "names a directory"),
        ({"classifiers": []}, "classifiers"),
        ({}, "classifiers: required key is missing"),
        ({**MINIMAL, "dataset": {"n_train": 0}}, "dataset.n_train"),
        ({**MINIMAL, "evaluation": {"eps": [-1.0]}}, "evaluation.eps"),
        ({**MINIMAL, "evaluation": {"attacks": {"latent-space": ["x"]}}}, "evaluation.attacks"),
        ({**MINIMAL, "generator": {"source": "load"}}, "needs spec"),
        ({**MINIMAL, "lipschitz": {"methods": ["guess"]}}, "lipschitz.methods: 'guess'"),
        ({**MINIMAL, "bogus": {}}, "bogus: unknown key"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(data, needle):
    with pytest.raises(UserInputError) as info:
        config_from_dict(data, "c.toml")
    message = str(info.value)
    assert needle in message and "\n" not in message and message.startswith("c.toml: ")


def test_set_overrides_parse_toml_values():
    data = {"classifiers": [{"name": "std"}, {"name": "adv", "method": "pgd"}]}
    apply_overrides(
        data,
        [
            "dataset.n_train=100",
            "evaluation.eps=[0.5, 1]",
            "classifiers.adv.eps=2.0",
            "classifiers.0.epochs=3",
            "run.device=cuda",
            'generator.spec="affine"',
            "generator.options.width=16",
        ],
    )
    cfg = config_from_dict(data)
    assert cfg.dataset.n_train == 100 and cfg.evaluation.eps == [0.5, 1.0]
    assert cfg.classifier("adv").eps == 2.0 and cfg.classifier("std").epochs == 3
    assert cfg.run.device == "cuda" and cfg.generator.spec == "affine"
    assert cfg.generator.options == {"width": 16}


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("dataset.n_train", "expected section.key=value"),
        ("n_train=3", "expected section.key=value"),
        ("nosuch.key=1", "unknown section 'nosuch'"),
        ("classifiers.zzz.epochs=1", "no list entry 'zzz'"),
    ],
)
def test_bad_overrides(item, needle):
    with pytest.raises(UserInputError, match=needle):
        apply_overrides({"classifiers": [{"name": "std"}]}, [item])


def test_override_to_wrong_type_names_key(tmp_path):
    path = _write(tmp_path, '[[classifiers]]\nname = "std"\n')
    with pytest.raises(UserInputError, match=r"dataset\.n_train"):
        load_config(path, ["dataset.n_train=many"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserInputError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(UserInputError, match="not valid TOML"):
        load_config(_write(tmp_path, "[run\nseed = 1"))


def test_to_toml_round_trips():
    cfg = config_from_dict(
        {
            **MINIMAL,
            "generator": {"options": {"width": 16}},
            "classifiers": [{"name": "pgd", "method": "pgd", "eps": 1.5, "options": {"num_steps": 7}}],
        }
    )
    again = config_from_dict(tomllib.loads(to_toml(config_to_dict(cfg))))
    assert config_to_dict(again) == config_to_dict(cfg)


@pytest.mark.parametrize("name", ["demo", "fashion-mnist", "fashion-cpu", "mnist-cpu", "paper-mnist",
                                  "paper-imagenet10"])
def test_shipped_configs_validate(name):
    cfg = load_config(ROOT / "configs" / f"{name}.toml")
    assert cfg.classifiers


def test_packaged_demo_is_identical_to_repository_copy():
    from intrinsic_robustness.api import demo_config_path

    assert demo_config_path().read_bytes() == (ROOT / "configs" / "demo.toml").read_bytes()


def test_cli_config_show(tmp_path, capsys):
    from intrinsic_robustness.cli import main

    path = _write(tmp_path, '[[classifiers]]\nname = "std"\n')
    assert main(["config", "show", str(path), "--set", "dataset.n_test=7"]) == 0
    shown = tomllib.loads(capsys.readouterr().out)
    assert shown["dataset"]["n_test"] == 7 and shown["classifiers"][0]["name"] == "std"
    assert main(["config", "show", str(path), "--set", "dataset.n_tset=7"]) == 2
    assert "dataset.n_tset: unknown key" in capsys.readouterr().err
