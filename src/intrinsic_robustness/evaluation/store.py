"""Storage for evaluations: per-batch partial results (resume) and the final JSON + safetensors pair.

While running, ``<out>.partial/`` holds ``settings.json`` (a fingerprint of everything that determines the
answer) and one ``batch-NNNNN.safetensors`` per finished batch, each written atomically (both appear with the
first finished batch, so a refused or empty run leaves no directory behind). A rerun with the
same fingerprint loads the finished batches and attacks only the rest; a different fingerprint discards them.
In a torchrun job each rank writes the batches it attacked (their indices differ) and rank 0 alone writes
``settings.json`` (at the start, so a batch is never on disk without its fingerprint) and removes the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from intrinsic_robustness.distributed import is_distributed, is_main, main_only
from intrinsic_robustness.storage import load_tensors, read_json, save_tensors, set_aside_if_damaged, write_json


def outputs_for(out: str | Path) -> tuple[Path, Path, Path]:
    """(json path, safetensors path, partial directory) for an ``--out`` JSON path."""
    out = Path(out)
    return out, out.with_suffix(".safetensors"), out.with_name(out.name + ".partial")


class PartialStore:
    """Finished batches of one evaluation, kept on disk so an interrupted run resumes where it stopped."""

    def __init__(self, directory: Path | None, digest: str) -> None:
        self.directory, self.digest = directory, digest
        if directory is None:
            return
        main_only(_prepare, directory, digest)  # in a torchrun job rank 0 checks while the others wait

    def _file(self, k: int) -> Path:
        assert self.directory is not None
        return self.directory / f"batch-{k:05d}.safetensors"

    def load(self, k: int) -> dict[str, torch.Tensor] | None:
        if self.directory is None or not self._file(k).is_file():
            return None
        if set_aside_if_damaged(self._file(k), "a finished batch"):  # truncated by a crash or a full disk
            return None
        return load_tensors(self._file(k))

    def save(self, k: int, tensors: dict[str, torch.Tensor], seconds: float) -> None:
        if self.directory is None:
            return
        save_tensors(self._file(k), tensors)  # batch files are disjoint: any rank writes its own
        if is_main():
            write_json(self.directory / "settings.json", {"digest": self.digest, "seconds": seconds})

    def seconds(self) -> float:
        if self.directory is None or not (self.directory / "settings.json").is_file():
            return 0.0
        return float(read_json(self.directory / "settings.json").get("seconds", 0.0))

    def remove(self) -> None:
        if self.directory is not None and self.directory.exists() and is_main():
            shutil.rmtree(self.directory)


def _prepare(directory: Path, digest: str) -> None:
    """Drop batches of another fingerprint; in a torchrun job write the fingerprint at once, since other ranks'
    batches may land before rank 0 finishes one and are only trusted beside it."""
    settings = directory / "settings.json"
    if settings.is_file():
        set_aside_if_damaged(settings, "the fingerprint of the finished batches")  # then they are dropped below
    if directory.exists() and (not settings.is_file() or read_json(settings).get("digest") != digest):
        for stale in (settings, *directory.glob("batch-*.safetensors")):  # keeps the lock file of its writer
            stale.unlink(missing_ok=True)
    if is_distributed() and not settings.is_file():
        write_json(settings, {"digest": digest, "seconds": 0.0})
