"""Corrupted or truncated files (issue 23): a file the user gives is refused in one line naming it (exit 2, never a
traceback); a checkpoint or finished-batch store the run owns is set aside as NAME.corrupt with a warning and its
work recomputed."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from intrinsic_robustness.storage import safetensors_damage, set_aside_if_damaged
from test_faults_support import cli, one_error, tree


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    from intrinsic_robustness import api
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.generators.load import generator_info, save_generator
    from intrinsic_robustness.training import fit

    root = tmp_path_factory.mktemp("corrupt")
    gen = make_affine()
    save_generator(gen, root / "gen", {"architecture": "affine", "latent_dim": 8, "num_classes": 3,
                                       "image_shape": [1, 6, 6]})
    generate_dataset(gen, root / "ds", 30, 6, seed=0, generator_info=generator_info("affine", gen))
    fit(load_dataset(root / "ds", "train"), "standard", arch="linear", epochs=2, out=root / "clf")
    api.lipschitz("affine", "gradient", seed=0, device="cpu", out=root / "lip.json", anchors_per_class=2)
    return root


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


EVA = ("evaluate", "--classifier", "{t}/clf", "--data", "{t}/ds", "--threat", "unconstrained", "--attack", "pgd",
       "--out", "{t}/e.json", "--device", "cpu")
CASES = [
    ("generator weights truncated", "gen/generator.safetensors", "truncate",
     ("generate", "--generator", "{t}/gen", "--n-train", "6", "--n-test", "3", "--out", "{t}/new")),
    ("generator weights garbage", "gen/generator.safetensors", "garbage",
     ("generate", "--generator", "{t}/gen", "--n-train", "6", "--n-test", "3", "--out", "{t}/new")),
    ("generator.json truncated", "gen/generator.json", "truncate",
     ("generate", "--generator", "{t}/gen", "--n-train", "6", "--n-test", "3", "--out", "{t}/new")),
    ("classifier weights truncated", "clf/model.safetensors", "truncate", EVA),
    ("classifier config binary", "clf/config.json", "garbage", EVA),
    ("dataset shard truncated", "ds/test-00000.safetensors", "truncate", EVA),
    ("dataset manifest truncated", "ds/manifest.json", "truncate", EVA),
    ("Lipschitz file truncated", "lip.json", "truncate",
     ("bound", "--risk", "0.1", "--eps", "1", "--lipschitz-file", "{t}/lip.json")),
    (".pt weights garbage", "w.pt", "garbage",
     ("generate", "--generator", "affine", "--generator-weights", "{t}/w.pt", "--n-train", "6", "--n-test", "3",
      "--out", "{t}/new")),
]


@pytest.mark.parametrize("name,file,how,args", CASES, ids=[c[0] for c in CASES])
def test_damaged_input_is_refused_naming_the_file(made: Path, tmp_path: Path, capsys, name: str, file: str,
                                                   how: str, args: tuple[str, ...]) -> None:
    for top in ("gen", "ds", "clf", "lip.json"):
        (shutil.copytree if (made / top).is_dir() else shutil.copy)(made / top, tmp_path / top)
    target = tmp_path / file
    if how == "truncate":
        _truncate(target)
    else:
        target.write_bytes(bytes(range(256)) * 4)
    before = tree(tmp_path)
    code, _, err = cli(capsys, *(a.replace("{t}", str(tmp_path)) for a in args))
    one_error(code, err, target.name)
    assert tree(tmp_path) == before


def test_safetensors_damage_sees_truncation_without_loading(tmp_path: Path) -> None:
    from intrinsic_robustness.storage import save_tensors

    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.arange(100.0)})
    assert safetensors_damage(path) is None
    for keep in (0.99, 0.5, 0.01):
        shutil.copy(path, tmp_path / "c.safetensors")
        _truncate(tmp_path / "c.safetensors", keep)
        assert "truncated" in safetensors_damage(tmp_path / "c.safetensors")
    (tmp_path / "z.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    assert safetensors_damage(tmp_path / "z.safetensors")


def test_a_damaged_training_checkpoint_is_set_aside_and_training_redone(made: Path, tmp_path: Path,
                                                                         caplog) -> None:
    """An unfinished classifier whose checkpoint was cut short (a crash mid-write of an older version, a full
    disk): the rerun warns, keeps the damaged file as checkpoint.safetensors.corrupt and trains afresh."""
    from intrinsic_robustness.data.synthetic import load_dataset
    from intrinsic_robustness.training import fit

    out = tmp_path / "clf"
    shutil.copytree(made / "clf", out)
    (out / "config.json").unlink()  # an unfinished run: train.json and a checkpoint, no model yet
    shutil.copy(out / "model.safetensors", out / "checkpoint.safetensors")
    (out / "model.safetensors").unlink()
    _truncate(out / "checkpoint.safetensors")
    (out / "history.jsonl").unlink()
    with caplog.at_level(logging.WARNING):
        fit(load_dataset(made / "ds", "train"), "standard", arch="linear", epochs=2, out=out)
    assert "set aside as checkpoint.safetensors.corrupt" in caplog.text
    assert (out / "checkpoint.safetensors.corrupt").is_file() and (out / "config.json").is_file()
    from safetensors.torch import load_file

    fresh, redone = load_file(made / "clf" / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(fresh[k], redone[k]) for k in fresh)  # the same seeded training, redone


def test_damaged_finished_batches_are_recomputed(made: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    from intrinsic_robustness.evaluation import evaluate
    from intrinsic_robustness.evaluation import run as run_mod

    clean = evaluate(str(made / "clf"), str(made / "ds"), threat="unconstrained", attacks="pgd", eps=[0.1],
                     batch_size=2)
    original, calls = run_mod._attack_batch, []

    def stop_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return original(*args, **kwargs)

    out = tmp_path / "e.json"
    monkeypatch.setattr(run_mod, "_attack_batch", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate(str(made / "clf"), str(made / "ds"), threat="unconstrained", attacks="pgd", eps=[0.1],
                 batch_size=2, out=out)
    monkeypatch.setattr(run_mod, "_attack_batch", original)
    partial = tmp_path / "e.json.partial"
    assert sorted(p.name for p in partial.glob("batch-*")) == ["batch-00000.safetensors", "batch-00001.safetensors"]
    _truncate(partial / "batch-00001.safetensors", 0.3)
    with caplog.at_level(logging.WARNING):
        result = evaluate(str(made / "clf"), str(made / "ds"), threat="unconstrained", attacks="pgd", eps=[0.1],
                          batch_size=2, out=out)
    assert "batch-00001.safetensors: a finished batch is unreadable" in caplog.text
    assert torch.equal(result.min_norms, clean.min_norms) and not partial.exists()


def test_damaged_batch_fingerprint_drops_the_batches(tmp_path: Path, caplog) -> None:
    from intrinsic_robustness.evaluation.store import PartialStore

    store = PartialStore(tmp_path / "p", "abc")
    store.save(0, {"a": torch.zeros(2)}, 1.0)
    (tmp_path / "p" / "settings.json").write_text('{"digest": "ab')
    with caplog.at_level(logging.WARNING):
        again = PartialStore(tmp_path / "p", "abc")
    assert again.load(0) is None and "settings.json" in caplog.text
    assert (tmp_path / "p" / "settings.json.corrupt").is_file()


def test_truncated_meta_json_is_refused_by_report(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"report": {}}))
    (run / "meta.json").write_text('{"format": "irob-run/1", "stag')
    code, _, err = cli(capsys, "report", run, "--out", tmp_path / "rep")
    one_error(code, err, "meta.json", "not valid JSON")


def test_set_aside_leaves_intact_files(tmp_path: Path) -> None:
    from intrinsic_robustness.storage import save_tensors

    save_tensors(tmp_path / "ok.safetensors", {"a": torch.ones(3)})
    assert not set_aside_if_damaged(tmp_path / "ok.safetensors", "test")
    assert (tmp_path / "ok.safetensors").is_file()
