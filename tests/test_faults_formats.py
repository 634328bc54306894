"""Files from a newer (or unknown) version: every versioned reader refuses them in one line naming the format it
found and the ones it reads, exit 2, nothing written (issue 23: meta.json "irob-run/99" made `irob report` exit 0).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import check_format, read_versioned
from test_faults_support import cli, one_error, tree, write_config


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """One of each versioned file: generator, dataset, classifier, Lipschitz file, evaluation and a run (~10 s)."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli import main
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.generators.load import generator_info, save_generator
    from intrinsic_robustness.training import fit

    root = tmp_path_factory.mktemp("formats")
    gen = make_affine()
    save_generator(gen, root / "gen", {"architecture": "affine", "latent_dim": 8, "num_classes": 3,
                                       "image_shape": [1, 6, 6]})
    generate_dataset(gen, root / "ds", 30, 6, seed=0, generator_info=generator_info("affine", gen))
    fit(load_dataset(root / "ds", "train"), "standard", arch="linear", epochs=1, out=root / "clf")
    api.lipschitz("affine", "gradient", seed=0, device="cpu", out=root / "lip.json", anchors_per_class=2)
    api.evaluate(str(root / "clf"), str(root / "ds"), "unconstrained", out=root / "eval.json", attacks="pgd",
                 eps=[0.1], device="cpu", n=3)
    assert main(["run", str(write_config(root)), "--device", "cpu", "--run-dir", str(root / "run")]) == 0
    setup = json.loads((root / "run" / "meta.json").read_text())["machine"]["thread_setup"]
    assert setup["threads"] >= 1 and setup["wait_policy_from"]  # the thread choice is recorded (issue 23)
    return root


def _edit(path: Path, fmt: str | None) -> None:
    data = json.loads(path.read_text())
    if fmt is None:
        data.pop("format", None)
    else:
        data["format"] = fmt
    path.write_text(json.dumps(data))


def _copy(made: Path, name: str, tmp_path: Path) -> Path:
    src = made / name
    dst = tmp_path / name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst


def test_report_refuses_a_newer_run_format(made: Path, tmp_path: Path, capsys) -> None:
    run = _copy(made, "run", tmp_path)
    _edit(run / "meta.json", "irob-run/99")
    shutil.rmtree(run / "report")
    before = tree(tmp_path)
    code, _, err = cli(capsys, "report", run)
    one_error(code, err, "meta.json", "'irob-run/99'", "'irob-run/1'", "newer")
    assert tree(tmp_path) == before


def test_run_refuses_to_resume_a_newer_run_format(made: Path, tmp_path: Path, capsys) -> None:
    run = _copy(made, "run", tmp_path)
    _edit(run / "meta.json", "irob-run/2")
    before = tree(tmp_path)
    code, _, err = cli(capsys, "run", made / "tiny.toml", "--device", "cpu", "--run-dir", run)
    one_error(code, err, "'irob-run/2'", "'irob-run/1'")
    assert tree(tmp_path) == before


def test_meta_without_a_format_is_refused(made: Path, tmp_path: Path, capsys) -> None:
    run = _copy(made, "run", tmp_path)
    _edit(run / "meta.json", None)
    code, _, err = cli(capsys, "report", run, "--out", tmp_path / "rep")
    one_error(code, err, 'no "format" entry', "'irob-run/1'")
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("name,file,fmt,args", [
    ("dataset", "ds/manifest.json", "irob-synthetic/2",
     ("evaluate", "--classifier", "{m}/clf", "--data", "{t}/ds", "--threat", "unconstrained", "--attack", "pgd",
      "--out", "{t}/e.json", "--device", "cpu")),
    ("classifier", "clf/config.json", "irob-classifier/3",
     ("evaluate", "--classifier", "{t}/clf", "--data", "{m}/ds", "--threat", "unconstrained", "--attack", "pgd",
      "--out", "{t}/e.json", "--device", "cpu")),
    ("generator", "gen/generator.json", "irob-generator/2",
     ("generate", "--generator", "{t}/gen", "--n-train", "6", "--n-test", "3", "--out", "{t}/new")),
    ("lipschitz", "lip.json", "irob-lipschitz/4",
     ("bound", "--risk", "0.1", "--eps", "1", "--lipschitz-file", "{t}/lip.json")),
    ("foreign", "lip.json", "somebody-else/1",
     ("bound", "--risk", "0.1", "--eps", "1", "--lipschitz-file", "{t}/lip.json")),
])
def test_every_versioned_file_refuses_a_newer_format(made: Path, tmp_path: Path, capsys, name: str, file: str,
                                                     fmt: str, args: tuple[str, ...]) -> None:
    top = file.split("/")[0]
    _copy(made, top, tmp_path)
    _edit(tmp_path / file, fmt)
    before = tree(tmp_path)
    code, _, err = cli(capsys, *(a.replace("{m}", str(made)).replace("{t}", str(tmp_path)) for a in args))
    line = one_error(code, err, Path(file).name, repr(fmt), "this version reads")
    assert ("newer" in line) == (name != "foreign"), line
    assert tree(tmp_path) == before


def test_evaluation_file_of_a_newer_format(made: Path, tmp_path: Path, capsys) -> None:
    from intrinsic_robustness.evaluation.result import EvalResult

    shutil.copy(made / "eval.json", tmp_path / "eval.json")
    shutil.copy(made / "eval.safetensors", tmp_path / "eval.safetensors")
    _edit(tmp_path / "eval.json", "irob-evaluation/2")
    with pytest.raises(UserInputError, match=r"'irob-evaluation/2'.*'irob-evaluation/1'"):
        EvalResult.load(tmp_path / "eval.json")
    run = _copy(made, "run", tmp_path)  # the report reads the run's evaluation files
    _edit(run / "eval" / "std" / "unconstrained.json", "irob-evaluation/2")
    code, _, err = cli(capsys, "report", run, "--out", tmp_path / "rep")
    one_error(code, err, "unconstrained.json", "'irob-evaluation/2'")
    assert not (tmp_path / "rep").exists()


def test_files_written_now_carry_their_format_and_older_ones_still_read(made: Path, tmp_path: Path) -> None:
    from intrinsic_robustness.evaluation.result import EvalResult
    from intrinsic_robustness.lipschitz.result import LipschitzResult

    assert json.loads((made / "lip.json").read_text())["format"] == "irob-lipschitz/1"
    assert json.loads((made / "eval.json").read_text())["format"] == "irob-evaluation/1"
    shutil.copy(made / "lip.json", tmp_path / "lip.json")
    _edit(tmp_path / "lip.json", None)  # written before the key existed
    assert LipschitzResult.load(tmp_path / "lip.json").method == "gradient"
    for suffix in (".json", ".safetensors"):
        shutil.copy(made / f"eval{suffix}", tmp_path / f"eval{suffix}")
    _edit(tmp_path / "eval.json", None)
    assert EvalResult.load(tmp_path / "eval.json").n == 3


def test_check_format_names_found_and_known(tmp_path: Path) -> None:
    check_format({"format": "a/1"}, "f.json", ("a/1", "a/2"))
    check_format({}, "f.json", "a/1", required=False)
    with pytest.raises(UserInputError, match=r"f\.json: format 'a/3'; this version reads 'a/1', 'a/2'; .*newer"):
        check_format({"format": "a/3"}, "f.json", ("a/1", "a/2"))
    with pytest.raises(UserInputError, match="not a file this version can read"):
        check_format({"format": "b/1"}, "f.json", "a/1")
    with pytest.raises(UserInputError, match="no \"format\" entry"):
        check_format({}, "f.json", "a/1")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UserInputError, match="expected a JSON object, found list"):
        read_versioned(tmp_path / "list.json", "a/1")
