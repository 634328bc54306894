"""Every registered Lipschitz estimator, driven by the registry: its facts, its options, the CLI's --option.

A new estimator is one class and one registration; these tests then cover it without edits.
"""

from __future__ import annotations

import json

import pytest
import torch

from intrinsic_robustness.attacks import ATTACKS
from intrinsic_robustness.cli import main
from intrinsic_robustness.cli.choices import fill_help, registry_choices
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.affine import AffineGenerator, make_affine
from intrinsic_robustness.lipschitz import ESTIMATORS, estimate_lipschitz
from intrinsic_robustness.lipschitz.base import Estimator
from intrinsic_robustness.lipschitz.registry import estimator_facts
from intrinsic_robustness.lipschitz.result import bound_basis
from intrinsic_robustness.report.data import lipschitz_bracket

METHODS = ESTIMATORS.names()
# Options that keep each estimator fast on the tiny affine generator (names checked against the signature).
FAST = {"sampling": {"neighbors": 20}, "paper-sampling": {"neighbors": 20},
        "gradient": {"power_iters": 3, "ascent_steps": 2, "restarts": 0}}


@pytest.fixture(scope="module")
def gen() -> AffineGenerator:
    return make_affine(latent_dim=3, num_classes=2, height=3, width=3)


@pytest.mark.parametrize("method", METHODS)
def test_registration_records_the_class_facts(method: str) -> None:
    cls = ESTIMATORS.get(method)
    assert issubclass(cls, Estimator) and cls.name == method
    assert ESTIMATORS.info(method) == cls.facts() == estimator_facts(method)
    assert cls.scale > 0 and (cls.global_bound <= cls.certified)  # a global constant is a certified one


def test_the_bracket_and_the_reference_are_registered_once() -> None:
    places = [ESTIMATORS.info(m)["bracket"] for m in METHODS if ESTIMATORS.info(m)["bracket"] is not None]
    assert len(places) == len(set(places))
    assert sum(ESTIMATORS.info(m)["reference"] for m in METHODS) == 1
    # certified upper bounds sit above every estimate from below
    low = [ESTIMATORS.info(m)["bracket"] for m in METHODS if not ESTIMATORS.info(m)["certified"]]
    high = [ESTIMATORS.info(m)["bracket"] for m in METHODS if ESTIMATORS.info(m)["certified"]]
    assert max(low) < min(high)


def test_an_unregistered_method_gets_the_safe_defaults() -> None:
    facts = estimator_facts("someone-elses-method")
    assert facts["label"] == "someone-elses-method" and not facts["certified"] and not facts["global_bound"]
    assert facts["scale"] == 1.0 and facts["bracket"] is None


@pytest.mark.parametrize("method", METHODS)
def test_each_estimator_runs_and_its_result_names_it(method: str, gen: AffineGenerator) -> None:
    if method == "certified-local":
        pytest.skip("certified-local costs seconds per anchor; tests/test_lipschitz_certified.py covers it")
    result = estimate_lipschitz(gen, method, anchors_per_class=3, radius=0.5, seed=1, device="cpu",
                                options=FAST.get(method, {}))
    assert result.method == method and result.certified == ESTIMATORS.info(method)["certified"]
    assert [c.label for c in result.per_class] == [0, 1]
    values = torch.tensor([v for c in result.per_class for v in c.values])
    assert torch.isfinite(values).all() and (values > 0).all()
    assert result.global_bound == ESTIMATORS.info(method)["global_bound"]  # recorded in the result file
    basis = bound_basis(result, "max")
    assert basis.global_bound == ESTIMATORS.info(method)["global_bound"]
    assert all(s == 0.0 for s in basis.slack) or not basis.global_bound


def test_the_report_bracket_follows_the_registered_facts() -> None:
    def entry(values: list[float]) -> dict:
        return {"lipschitz": values, "values": [[v] for v in values]}

    lipschitz = {"gradient": entry([1.0, 2.0]), "paper-sampling": entry([1.0, 2.0]), "sampling": entry([0.5, 1.0])}
    bracket = lipschitz_bracket(lipschitz)
    assert bracket["methods"] == ["paper-sampling", "sampling", "gradient"]
    assert bracket["values"]["paper-sampling"] == [0.5, 1.0]  # divided by its registered scale 2
    assert bracket["reference"] == "gradient"
    assert bracket["ratio_to_gradient"]["sampling"]["median"] == pytest.approx(0.5)


@pytest.mark.parametrize("method", METHODS)
def test_parse_options_reads_each_option_as_its_type(method: str) -> None:
    cls = ESTIMATORS.get(method)
    with pytest.raises(UserInputError, match=f"not an option of lipschitz method {method}"):
        cls.parse_options(["no_such_option=1"])
    for name in cls.option_names():
        with pytest.raises(UserInputError, match=f"--option {name}='abc': expected"):
            cls.parse_options([f"{name}=abc"])


def test_parse_options_values_and_mistakes() -> None:
    cls = ESTIMATORS.get("certified-local")
    assert cls.parse_options(["radius=0.1", "anchors=none", "steps=3"]) == {"radius": 0.1, "anchors": None,
                                                                             "steps": 3}
    for bad, words in [(["steps"], "KEY=VALUE"), (["steps=2", "steps=3"], "given twice"),
                       (["steps=2.5"], "expected int"), (["steps=none"], "expected int")]:
        with pytest.raises(UserInputError, match=words):
            cls.parse_options(bad)


def test_the_library_keeps_the_runs_radius_apart_from_an_estimators_own() -> None:
    est = ESTIMATORS.get("certified-local")(radius=0.1)
    assert est.radius_for(0.5) == 0.1
    with pytest.raises(UserInputError, match="given twice"):
        estimate_lipschitz(make_affine(latent_dim=2, num_classes=2, height=2, width=2), "sampling",
                           options={"neighbors": 5}, neighbors=6)


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["lipschitz", "--generator", "affine", "--anchors-per-class", "2", "--device", "cpu", *args])
    return code, capsys.readouterr().err


def test_cli_option_reaches_the_estimator(tmp_path, capsys) -> None:
    out = tmp_path / "lip.json"
    code, _ = _cli(["--method", "gradient", "--option", "power_iters=2", "--option", "ascent-steps=1",
                    "--restarts", "0", "--out", str(out)], capsys)
    assert code == 0
    params = json.loads(out.read_text())["parameters"]
    assert (params["power_iters"], params["ascent_steps"], params["restarts"]) == (2, 1, 0)


@pytest.mark.parametrize(("args", "words"), [
    (["--method", "gradient", "--option", "neighbors=5"], "--option neighbors: not an option of lipschitz method "
                                                           "gradient; it takes power_iters"),
    (["--method", "sampling", "--option", "neighbors=many"], "--option neighbors='many': expected int"),
    (["--method", "sampling", "--option", "neighbors=0"], "neighbors=0: must be a positive integer"),
    (["--method", "sampling", "--neighbors", "5", "--option", "neighbors=6"], "also given as --neighbors"),
])
def test_cli_option_mistakes_are_one_error_line(tmp_path, capsys, args: list[str], words: str) -> None:
    out = tmp_path / "lip.json"
    code, err = _cli([*args, "--out", str(out)], capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err
    assert not out.exists()


def test_help_texts_list_the_registries() -> None:
    choices = registry_choices()
    assert choices["estimators"].split(", ") == list(METHODS)
    assert all(name in choices["attacks"] for name in ATTACKS.names())
    assert fill_help("one of {estimators}; {unknown} stays", choices) == (
        f"one of {choices['estimators']}; {{unknown}} stays")


def test_cli_help_shows_the_registered_names(capsys) -> None:
    assert main(["lipschitz", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "{estimators}" not in text and "{estimator_options}" not in text
    assert all(m in text.replace("│", " ").replace(" ", "") for m in METHODS)


@pytest.mark.parametrize("name", ATTACKS.names())
def test_an_attacks_threat_is_its_class_variable(name: str) -> None:
    assert ATTACKS.info(name)["threat"] == ATTACKS.get(name).threat


def test_config_takes_a_table_of_options_per_method() -> None:
    from intrinsic_robustness.pipeline.config import config_from_dict

    base = {"classifiers": [{"name": "std"}]}
    lip = {"methods": ["sampling", "certified-local"], "radius": 0.5,
           "options": {"batch_size": 64, "certified-local": {"radius": 0.1, "steps": 2}}}
    cfg = config_from_dict({**base, "lipschitz": lip})
    assert cfg.lipschitz.method_options("certified-local") == {"radius": 0.1, "steps": 2}
    assert cfg.lipschitz.method_options("sampling")["batch_size"] == 64 and cfg.lipschitz.radius == 0.5
    for options, words in [({"gradient": {"power_iters": 2}}, "options.gradient: a table of options for a method "
                                                              "not in methods"),
                           ({"certified-local": {"neighbors": 2}}, "options.certified-local.neighbors: not an "
                                                                   "option of certified-local")]:
        with pytest.raises(UserInputError, match=words):
            config_from_dict({**base, "lipschitz": {**lip, "options": options}})


def test_the_default_method_is_one_name_everywhere() -> None:
    import inspect

    from intrinsic_robustness import api
    from intrinsic_robustness.cli.lipschitz import lipschitz_command
    from intrinsic_robustness.lipschitz.base import DEFAULT_METHOD
    from intrinsic_robustness.pipeline.config import LipschitzConfig

    assert DEFAULT_METHOD in ESTIMATORS
    assert inspect.signature(estimate_lipschitz).parameters["method"].default == DEFAULT_METHOD
    assert inspect.signature(api.lipschitz).parameters["method"].default == DEFAULT_METHOD
    assert inspect.signature(lipschitz_command).parameters["method"].default == DEFAULT_METHOD
    assert LipschitzConfig().methods == [DEFAULT_METHOD]


def test_a_global_result_is_known_from_its_file_or_else_its_registration(tmp_path) -> None:
    import subprocess
    import sys

    from intrinsic_robustness.lipschitz import ClassLipschitz, LipschitzResult

    per_class = tuple(ClassLipschitz.from_values(c, torch.full((4,), 2.0, dtype=torch.float64)) for c in (0, 1))
    result = LipschitzResult("certified-global", 0.5, {"num_classes": 2}, per_class, 0, 0.0, certified=True,
                             global_bound=True)
    result.save(tmp_path / "g.json")
    data = json.loads((tmp_path / "g.json").read_text())
    assert data["global_bound"] is True
    del data["global_bound"]  # a file written before the fact was recorded: the registration decides
    assert bound_basis(LipschitzResult.from_dict(data), "max").describe().endswith("a deterministic certificate")
    code = ("import sys; from intrinsic_robustness.lipschitz.result import bound_basis; "
            f"b = bound_basis({str(tmp_path / 'g.json')!r}, 'max'); print(b.global_bound, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]  # read from the file: the bound needs no estimator module (and no torch)
