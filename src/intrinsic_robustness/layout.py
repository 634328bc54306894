"""Every path of a run directory, in one place: the pipeline's stages write there, the report reads there.

A room of its own on the orchestration floor, below both ``pipeline`` and ``report`` (the pipeline's last
stage calls the report, so the report must not import the pipeline).

::

    config.json  meta.json  .lock
    generator/                         generator.json + generator.safetensors (+ training.json, samples)
    lipschitz/<method>.json            one LipschitzResult per method
    dataset/                           manifest.json + safetensors shards (x, y, z)
    classifiers/<name>/                config.json + model.safetensors, history, checkpoints
    eval/<name>/<threat>.json          EvalResult JSON (+ .safetensors: per-example norms, examples)
    eval/<name>/attack-<attack>.json   one attack alone (evaluation.compare_attacks)
    eval/<name>/real-unconstrained.json  the classifier on real test images (evaluation.real_n)
    concentration/<source>.json        concentration from data: real images, generated test split ([concentration])
    report/                            report.json, report.md, report.html, figures
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

COMPARE_PREFIX = "attack-"
RUN_FORMAT = "irob-run/1"  # the "format" of a run's meta.json this version writes and reads


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run directory (``rel`` gives a path relative to it, as stage records store them)."""

    root: Path

    @classmethod
    def of(cls, root: str | os.PathLike[str]) -> RunLayout:
        return cls(Path(root))

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def meta_file(self) -> Path:
        return self.root / "meta.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def generator_dir(self) -> Path:
        return self.root / "generator"

    @property
    def generator_training(self) -> Path:
        return self.generator_dir / "training.json"

    def lipschitz_file(self, method: str) -> Path:
        return self.root / "lipschitz" / f"{method}.json"

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def manifest_file(self) -> Path:
        return self.dataset_dir / "manifest.json"

    def concentration_file(self, source: str) -> Path:
        """The concentration estimate of one sample (``real`` or ``generated``)."""
        return self.root / "concentration" / f"{source}.json"

    def classifier_dir(self, name: str) -> Path:
        return self.root / "classifiers" / name

    def eval_dir(self, name: str) -> Path:
        return self.root / "eval" / name

    def eval_file(self, name: str, threat: str) -> Path:
        return self.eval_dir(name) / f"{threat}.json"

    def real_eval_file(self, name: str) -> Path:
        """Classifier ``name`` attacked (unconstrained) on real test images (``evaluation.real_n``)."""
        return self.eval_dir(name) / "real-unconstrained.json"

    def compare_file(self, name: str, attack: str) -> Path:
        return self.eval_dir(name) / f"{COMPARE_PREFIX}{attack}.json"

    def compare_files(self, name: str) -> list[tuple[str, Path]]:
        """(attack, path) of every single-attack comparison written for classifier ``name``."""
        found = sorted(self.eval_dir(name).glob(f"{COMPARE_PREFIX}*.json"))
        return [(p.stem.removeprefix(COMPARE_PREFIX), p) for p in found]

    @property
    def report_dir(self) -> Path:
        return self.root / "report"

    def rel(self, path: Path) -> str:
        """``path`` relative to the run directory (how stage records name their outputs)."""
        return path.relative_to(self.root).as_posix()
