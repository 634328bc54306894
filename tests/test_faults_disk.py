"""A full disk, a read-only or vanished directory (issue 23): the write that fails gives one line naming what could
not be written and where, no half-written file is left (atomic writes), and the rerun after space is freed
resumes. A real 64 KiB tmpfs where it can be mounted (Linux, root), else a write patched to raise ENOSPC."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import sys
from pathlib import Path

import pytest

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import WriteFailed, save_tensors, write_json
from test_faults_support import cli, one_error, write_config


@contextlib.contextmanager
def small_disk(where: Path, size: str = "64k"):
    where.mkdir()
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts are a Linux feature")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}); the patched-write tests "
                    "cover the same paths")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path, leave: int = 0) -> Path:
    """Fill the tmpfs, leaving about ``leave`` bytes free."""
    import shutil

    filler = disk / "filler"
    with open(filler, "wb") as fh:
        free = shutil.disk_usage(disk).free - leave
        with contextlib.suppress(OSError):
            fh.write(b"\0" * max(0, free))
    return filler


def _no_temp(root: Path) -> None:
    assert not [p for p in root.rglob("*.tmp")], "a half-written temp file was left"


def test_full_tmpfs_refuses_the_write_in_one_line_and_the_rerun_succeeds(tmp_path: Path, capsys) -> None:
    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk, leave=4096)
        out = disk / "l.json"
        args = ("lipschitz", "--generator", "affine", "--method", "gradient", "--anchors-per-class", "300",
                "--device", "cpu", "--out", out)
        code, _, err = cli(capsys, *args)
        one_error(code, err, "l.json: could not be written (no space left on the device", "free in", "rerun")
        assert not out.exists()
        _no_temp(disk)
        filler.unlink()
        code, _, err = cli(capsys, *args)
        assert code == 0 and out.is_file(), err


def test_full_tmpfs_during_training_then_resume(tmp_path: Path, capsys) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.generators.load import generator_info

    gen = make_affine()
    generate_dataset(gen, tmp_path / "ds", 30, 6, seed=0, generator_info=generator_info("affine", gen))
    with small_disk(tmp_path / "disk") as disk:
        filler = _fill(disk)
        out = disk / "clf"
        args = ("train-classifier", "--data", tmp_path / "ds", "--method", "standard", "--arch", "linear",
                "--epochs", "2", "--device", "cpu", "--out", out)
        code, _, err = cli(capsys, *args)
        one_error(code, err, "could not be written (no space left on the device")
        _no_temp(disk)
        filler.unlink()
        code, _, err = cli(capsys, *args)
        assert code == 0 and (out / "model.safetensors").is_file(), err


class Disk:
    """Patched writers: every JSON or safetensors write after the first ``ok`` raises ``errno`` half-way."""

    def __init__(self, monkeypatch, ok: int, code: int = errno.ENOSPC, only: str = "") -> None:
        import pathlib

        import safetensors.torch as st

        self.calls, self.ok, self.code, self.only, self.failed = 0, ok, code, only, []
        real_text, real_save = pathlib.Path.write_text, st.save_file

        def write_text(path, data, *args, **kwargs):
            return self._maybe(path, lambda: real_text(path, data[: len(data) // 2]),
                               lambda: real_text(path, data, *args, **kwargs))

        def save_file(tensors, filename, *args, **kwargs):
            def half() -> None:
                Path(filename).write_bytes(b"\0" * 100)

            return self._maybe(Path(filename), half, lambda: real_save(tensors, filename, *args, **kwargs))

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)
        monkeypatch.setattr(st, "save_file", save_file)

    def _maybe(self, path: Path, half, whole):
        if path.name.endswith(".tmp") and self.only in path.name:
            self.calls += 1
            if self.calls > self.ok:
                half()
                self.failed.append(path.name)
                raise OSError(self.code, "simulated")
        return whole()


@pytest.mark.parametrize("code,words", [(errno.ENOSPC, "no space left on the device"),
                                        (errno.EDQUOT, "disk quota exceeded"),
                                        (errno.EROFS, "read-only file system")])
def test_atomic_writes_turn_write_faults_into_one_line(tmp_path: Path, monkeypatch, code: int, words: str) -> None:
    import torch

    write_json(tmp_path / "a.json", {"old": True})
    Disk(monkeypatch, ok=0, code=code)
    with pytest.raises(WriteFailed, match=rf"a\.json: could not be written \({words}; .* free in "):
        write_json(tmp_path / "a.json", {"new": True})
    with pytest.raises(WriteFailed, match=rf"t\.safetensors: could not be written \({words}"):
        save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(2)})
    assert (tmp_path / "a.json").read_text().strip() == '{\n  "old": true\n}'  # the old file, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert issubclass(WriteFailed, UserInputError)


def test_safetensors_reporting_a_full_disk_in_words_is_understood(tmp_path: Path, monkeypatch) -> None:
    import safetensors.torch as st
    import torch
    from safetensors import SafetensorError

    def full(tensors, filename, *args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                              '"No space left on device" })')

    monkeypatch.setattr(st, "save_file", full)
    with pytest.raises(WriteFailed, match="no space left on the device"):
        save_tensors(tmp_path / "t.safetensors", {"a": torch.ones(2)})
    assert list(tmp_path.iterdir()) == []


def test_vanished_output_directory_is_recreated(tmp_path: Path) -> None:
    import shutil

    write_json(tmp_path / "out" / "a.json", {"a": 1})
    shutil.rmtree(tmp_path / "out")  # removed under a running job
    write_json(tmp_path / "out" / "b.json", {"b": 1})
    assert (tmp_path / "out" / "b.json").is_file()


def test_disk_full_in_a_pipeline_stage_then_the_rerun_resumes(tmp_path: Path, capsys, monkeypatch) -> None:
    """ENOSPC on the first finished evaluation batch: one line naming it; after 'freeing space' the same command
    skips the finished stages and completes."""
    config = write_config(tmp_path)
    run = tmp_path / "run"
    disk = Disk(monkeypatch, ok=0, only="batch-")
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run)
    one_error(code, err, "batch-00000.safetensors: could not be written (no space left on the device")
    assert disk.failed and not list(run.rglob("*.tmp"))
    monkeypatch.undo()
    code, _, err = cli(capsys, "run", config, "--device", "cpu", "--run-dir", run)
    assert code == 0, err
    assert "- classifiers/std: done, unchanged (skipped)" in err and "+ evaluation/std: resumed" in err, err
