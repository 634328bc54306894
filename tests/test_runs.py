"""The stage engine with small stand-in stages: skip, redo on change, force, resume after a crash."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.pipeline.engine import RunDir, Stage, StageContext, execute, match_force
from intrinsic_robustness.storage import write_json


class Boom(RuntimeError):
    pass


def make_stages(calls: Counter, settings: dict, crash: set[str] | None = None, seen: dict | None = None):
    """A -> B -> {C/x, C/y}; each writes a JSON whose content is its setting plus its inputs' content."""
    crash = crash if crash is not None else set()

    def writer(name: str, reads: list[str]):
        def run(ctx: StageContext):
            calls[name] += 1
            if seen is not None:
                seen[name] = ctx.fresh
            upstream = [json.loads(ctx.path(f"{r}.json").read_text()) for r in reads]
            if name in crash:
                ctx.path(f"{name}.partial").write_text("half")
                raise Boom(name)
            write_json(ctx.path(f"{name}.json"), {"setting": settings[name], "up": upstream})
            return [f"{name}.json"]

        return run

    return [
        Stage("a", {"v": settings["a"]}, writer("a", [])),
        Stage("b", {"v": settings["b"]}, writer("b", ["a"]), inputs=("a",), clean=("b.partial",)),
        Stage("c/x", {"v": settings["c/x"]}, writer("c/x", ["b"]), inputs=("b",)),
        Stage("c/y", {"v": settings["c/y"]}, writer("c/y", ["b"]), inputs=("b",)),
    ]


SETTINGS = {"a": 1, "b": 2, "c/x": 3, "c/y": 4}


def _run(path: Path, calls: Counter, settings=SETTINGS, force=(), crash=None, seen=None):
    (path / "c").mkdir(parents=True, exist_ok=True)
    return execute(RunDir.open(path, seed=0), make_stages(calls, dict(settings), crash, seen), force=force)


def test_second_run_skips_everything(tmp_path):
    calls: Counter = Counter()
    first = _run(tmp_path, calls)
    assert [o.action for o in first] == ["ran"] * 4
    second = _run(tmp_path, calls)
    assert [o.action for o in second] == ["skipped"] * 4
    assert calls == Counter({"a": 1, "b": 1, "c/x": 1, "c/y": 1})
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["format"] == "irob-run/1" and meta["seed"] == 0 and "torch" in meta["versions"]
    rec = meta["stages"]["c/x"]
    assert rec["status"] == "done" and set(rec["inputs"]) == {"b"} and rec["outputs"]["c/x.json"]


def test_changed_setting_redoes_only_its_dependents(tmp_path):
    calls: Counter = Counter()
    _run(tmp_path, calls)
    _run(tmp_path, calls, settings={**SETTINGS, "c/x": 30})
    assert calls == Counter({"a": 1, "b": 1, "c/x": 2, "c/y": 1})
    _run(tmp_path, calls, settings={**SETTINGS, "c/x": 30, "b": 20})
    assert calls == Counter({"a": 1, "b": 2, "c/x": 3, "c/y": 2})


def test_force_reruns_but_identical_outputs_do_not_cascade(tmp_path):
    calls: Counter = Counter()
    _run(tmp_path, calls)
    outcomes = _run(tmp_path, calls, force=["b"])
    assert [o.action for o in outcomes] == ["skipped", "ran", "skipped", "skipped"]
    _run(tmp_path, calls, force=["c"])
    assert calls == Counter({"a": 1, "b": 2, "c/x": 2, "c/y": 2})


def test_crash_leaves_stage_running_and_rerun_resumes_it(tmp_path):
    calls: Counter = Counter()
    seen: dict = {}
    with pytest.raises(Boom):
        _run(tmp_path, calls, crash={"c/x"}, seen=seen)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["stages"]["c/x"]["status"] == "running" and "c/y" not in meta["stages"]
    outcomes = _run(tmp_path, calls, seen=seen)
    assert [o.action for o in outcomes] == ["skipped", "skipped", "resumed", "ran"]
    assert seen["c/x"] is False  # resumed, not fresh: the stage may continue from its checkpoints
    assert calls == Counter({"a": 1, "b": 1, "c/x": 2, "c/y": 1})


def test_changed_key_after_crash_starts_clean(tmp_path):
    calls: Counter = Counter()
    seen: dict = {}
    with pytest.raises(Boom):
        _run(tmp_path, calls, crash={"b"})
    assert (tmp_path / "b.partial").exists()
    _run(tmp_path, calls, settings={**SETTINGS, "b": 5}, seen=seen)
    assert seen["b"] is True and not (tmp_path / "b.partial").exists()


def test_missing_output_is_redone(tmp_path):
    calls: Counter = Counter()
    _run(tmp_path, calls)
    (tmp_path / "c" / "y.json").unlink()
    _run(tmp_path, calls)
    assert calls["c/y"] == 2 and calls["c/x"] == 1


def test_force_names():
    names = ["generator", "lipschitz/sampling", "classifiers/std", "classifiers/pgd", "evaluation/std"]
    assert match_force(names, ["classifiers"]) == {"classifiers/std", "classifiers/pgd"}
    assert match_force(names, ["classifiers/pgd", "generator"]) == {"classifiers/pgd", "generator"}
    assert match_force(names, ["all"]) == set(names)
    with pytest.raises(UserInputError, match="--force classifier: no such stage"):
        match_force(names, ["classifier"])


def test_foreign_meta_is_refused(tmp_path):
    write_json(tmp_path / "meta.json", {"format": "something-else"})
    with pytest.raises(UserInputError, match="use a new --run-dir"):
        RunDir.open(tmp_path)
