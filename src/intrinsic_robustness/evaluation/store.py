"""Storage for evaluations: per-batch partial results (resume) and the final JSON + safetensors pair.

While running, ``<out>.partial/`` holds ``settings.json`` (a fingerprint of everything that determines the
answer) and one ``batch-NNNNN.safetensors`` per finished batch, each written atomically. A rerun with the
same fingerprint loads the finished batches and attacks only the rest; a different fingerprint discards them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from intrinsic_robustness.storage import load_tensors, read_json, save_tensors, write_json


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
        settings = directory / "settings.json"
        if directory.exists() and (not settings.is_file() or read_json(settings).get("digest") != digest):
            shutil.rmtree(directory)
        if not directory.exists():
            directory.mkdir(parents=True)
            write_json(settings, {"digest": digest, "seconds": 0.0})

    def _file(self, k: int) -> Path:
        assert self.directory is not None
        return self.directory / f"batch-{k:05d}.safetensors"

    def load(self, k: int) -> dict[str, torch.Tensor] | None:
        if self.directory is None or not self._file(k).is_file():
            return None
        return load_tensors(self._file(k))

    def save(self, k: int, tensors: dict[str, torch.Tensor], seconds: float) -> None:
        if self.directory is None:
            return
        save_tensors(self._file(k), tensors)
        write_json(self.directory / "settings.json", {"digest": self.digest, "seconds": seconds})

    def seconds(self) -> float:
        if self.directory is None:
            return 0.0
        return float(read_json(self.directory / "settings.json").get("seconds", 0.0))

    def remove(self) -> None:
        if self.directory is not None and self.directory.exists():
            shutil.rmtree(self.directory)
