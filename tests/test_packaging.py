"""The package as a user gets it: a wheel from ``python -m build`` of a copy of the tree, its metadata (ranges,
no pins), its package data, and an install into a fresh venv that reuses this environment's torch and runs
``irob`` from outside the checkout. The full ``irob demo`` from the wheel is marked slow.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import intrinsic_robustness

ROOT = Path(__file__).resolve().parents[1]
VERSION = intrinsic_robustness.__version__


def _setuptools_new_enough() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 77


def _run(command: list[str], cwd: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", **env}
    full_env.pop("PYTHONPATH", None)
    result = subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built without network (``--no-isolation``) from a clean copy of pyproject, README and src."""
    pytest.importorskip("build", reason="pip install build (part of the [test] extra)")
    if not _setuptools_new_enough():
        pytest.skip("building needs setuptools >= 77 (pyproject's build-system requirement) in this environment")
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build"))
    dist = tree / "dist"
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(tree)], cwd=tree)
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ``--system-site-packages`` venv (torch and the other dependencies reused) with the wheel in it."""
    home = tmp_path_factory.mktemp("venv") / "env"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(home)], cwd=home.parent)
    python = home / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--no-deps",
          "--ignore-installed", "--quiet", str(wheel)], cwd=home.parent)
    return home


def _metadata(wheel: Path) -> tuple[list[str], str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = archive.read(f"intrinsic_robustness-{VERSION}.dist-info/METADATA").decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    version = next(line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Version:"))
    return requires, version


def test_wheel_metadata_states_ranges_not_pins(wheel: Path) -> None:
    requires, version = _metadata(wheel)
    assert version == VERSION
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if "==" in r], f"pinned dependencies: {runtime}"
    (torch_req,) = [r for r in runtime if r.split("<")[0].split(">")[0].strip() == "torch"]
    assert ">=2.5" in torch_req and "<3" in torch_req, torch_req


def test_wheel_carries_package_data_and_the_entry_point(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        packaged = archive.read("intrinsic_robustness/configs/demo.toml")
        entry = archive.read(f"intrinsic_robustness-{VERSION}.dist-info/entry_points.txt").decode()
    assert "intrinsic_robustness/py.typed" in names
    assert packaged == (ROOT / "configs" / "demo.toml").read_bytes(), "the packaged demo config drifted from configs/"
    assert "irob = intrinsic_robustness.cli:run" in entry
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_wheel_installs_into_a_fresh_venv_and_runs_outside_the_checkout(venv: Path, tmp_path: Path) -> None:
    """The venv imports the installed copy (not the checkout), finds its demo config, and ``irob`` answers."""
    python, irob = venv / "bin" / "python", venv / "bin" / "irob"
    assert _run([str(irob), "--version"], cwd=tmp_path).stdout.strip() == f"irob {VERSION}"
    probe = ("import json, intrinsic_robustness as m, intrinsic_robustness.api as api;"
             "print(json.dumps([m.__file__, str(api.demo_config_path()), api.demo_config_path().is_file()]))")
    where, config, exists = json.loads(_run([str(python), "-c", probe], cwd=tmp_path).stdout)
    assert Path(where).resolve().is_relative_to(venv.resolve()) and exists
    assert Path(config).resolve().is_relative_to(venv.resolve())
    shown = _run([str(irob), "config", "show", config, "--set", "evaluation.n=20"], cwd=tmp_path).stdout
    assert "evaluation" in shown
    bound = json.loads(_run([str(irob), "bound", "--risk", "0.05", "--eps", "2", "--lipschitz", "1.5", "--json"],
                            cwd=tmp_path).stdout)
    assert abs(bound["results"][0]["bound"] - 0.6223) < 1e-3


def test_installed_dependencies_satisfy_the_declared_ranges(venv: Path, tmp_path: Path) -> None:
    """pip would keep this environment's torch (and everything else): each requirement is already met."""
    check = (
        "import importlib.metadata as md, json\n"
        "from packaging.requirements import Requirement\n"
        "bad = []\n"
        "for text in md.requires('intrinsic-robustness') or []:\n"
        "    req = Requirement(text)\n"
        "    if req.marker is not None and not req.marker.evaluate({'extra': ''}):\n"
        "        continue\n"
        "    have = md.version(req.name)\n"
        "    if not req.specifier.contains(have, prereleases=True):\n"
        "        bad.append(f'{req} (installed {have})')\n"
        "print(json.dumps(bad))\n"
    )
    pytest.importorskip("packaging")
    assert json.loads(_run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path).stdout) == []


def test_top_level_import_is_cheap_and_reexports_the_api() -> None:
    code = ("import sys, intrinsic_robustness as irob; assert 'torch' not in sys.modules, 'torch imported eagerly';"
            "assert 'api' in dir(irob); import intrinsic_robustness.api as api; assert irob.api is api;"
            "print(irob.__version__)")
    assert _run([sys.executable, "-c", code], cwd=ROOT).stdout.strip() == VERSION


def test_version_flag_matches_the_package() -> None:
    out = _run([sys.executable, "-m", "intrinsic_robustness.cli", "--version"], cwd=ROOT).stdout.strip()
    assert out == f"irob {VERSION}"


def test_citation_file_names_the_paper_and_the_toolkit() -> None:
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"].startswith("1.2") and str(cff["version"]) == VERSION
    paper = cff["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Zhang", "Chen", "Gu", "Evans"]
    assert paper["year"] == 2020 and "AISTATS" in paper["conference"]["name"]
    assert cff["references"][0]["title"] == paper["title"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "CITATION.cff" in readme and f"version = {{{VERSION}}}" in readme, "README's citation names another version"


def test_ci_installs_the_readme_environment_first() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("pip install torch==2.13.0") < ci.index('pip install -e ".[test]"') < ci.index("python -m pytest")


@pytest.mark.slow
def test_demo_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """``irob demo`` from the installed wheel, in a directory with no checkout: the report is written."""
    _run([str(venv / "bin" / "irob"), "demo", "--run-dir", "demo", "--device", "cpu"], cwd=tmp_path, timeout=1800,
         OMP_NUM_THREADS="2")
    report = tmp_path / "demo" / "report"
    assert (report / "report.html").is_file() and (report / "report.json").is_file()
    assert json.loads((report / "report.json").read_text())["classifiers"]
