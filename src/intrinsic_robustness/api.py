"""The Python face of every ``irob`` command: each command is a thin wrapper over one function here, with the
same defaults, so notebook and CLI cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intrinsic_robustness.pipeline.config import PipelineConfig, load_config
from intrinsic_robustness.runtime import DEFAULT_DEVICE

if TYPE_CHECKING:
    import torch

    from intrinsic_robustness.evaluation import EvalResult
    from intrinsic_robustness.lipschitz import LipschitzResult

DEMO_CONFIG = "demo.toml"


def demo_config_path() -> Path:
    """The demo config shipped inside the package (identical to ``configs/demo.toml`` in the repository)."""
    return Path(str(resources.files("intrinsic_robustness") / "configs" / DEMO_CONFIG))


def resolve_config(path: str | os.PathLike[str], overrides: Sequence[str] = (), device: str | None = None,
                   seed: int | None = None) -> PipelineConfig:
    """Load a config file, apply ``--set`` overrides, then ``--device`` and ``--seed`` if given."""
    config = load_config(path, list(overrides))
    run = {k: v for k, v in (("device", device), ("seed", seed)) if v is not None}
    if run:
        from intrinsic_robustness.pipeline.config import config_from_dict, config_to_dict

        data = config_to_dict(config)
        data["run"].update(run)
        config = config_from_dict(data, str(path))
    return config


def run(config: PipelineConfig | str | os.PathLike[str], run_dir: str | os.PathLike[str] | None = None,
        force: Sequence[str] = (), overrides: Sequence[str] = (), device: str | None = None,
        seed: int | None = None, on_event: Callable[[Any], None] | None = None) -> Path:
    """Run or resume the pipeline; returns the run directory (``runs/<run.name>`` by default)."""
    from intrinsic_robustness.pipeline.stages import run_pipeline

    if not isinstance(config, PipelineConfig):
        config = resolve_config(config, overrides, device, seed)
    elif overrides or device is not None or seed is not None:
        raise ValueError("pass overrides, device and seed with a config path, not with a PipelineConfig")
    directory = Path(run_dir) if run_dir is not None else Path("runs") / config.run.name
    run_pipeline(config, directory, force=force, on_event=on_event)
    return directory


def report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Re-render the report of a run from its files (no model runs)."""
    from intrinsic_robustness.report import write_report

    return write_report(run_dir, out)


def demo(run_dir: str | os.PathLike[str] = "runs/demo", device: str | None = None, seed: int | None = None,
         on_event: Callable[[Any], None] | None = None) -> Path:
    """Run the packaged demo config; returns the path of ``report.html``."""
    directory = run(demo_config_path(), run_dir, device=device, seed=seed, on_event=on_event)
    return directory / "report" / "report.html"


def generate(generator: str, out: str | os.PathLike[str], n_train: int, n_test: int, seed: int = 0,
             weights: str | None = None, priors: Sequence[float] | None = None, batch_size: int = 500,
             device: str | torch.device = DEFAULT_DEVICE, overwrite: bool = False) -> dict[str, Any]:
    """Load the generator named by ``generator`` and write a dataset; the manifest records spec and checksum."""
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.generators.load import generator_info, load_generator
    from intrinsic_robustness.runtime import resolve_device

    if Path(out).exists() and not overwrite:
        raise UserInputError(f"{out} already exists; choose another --out or pass --force to replace it")
    if batch_size < 1:
        raise UserInputError(f"--batch-size {batch_size}: expected a positive integer")
    dev = resolve_device(device)
    gen = load_generator(generator, weights, device=dev)
    if priors is not None and len(priors) != int(gen.num_classes):
        raise UserInputError(f"--priors: {len(priors)} values for a generator with {gen.num_classes} classes")
    return generate_dataset(gen, out, n_train, n_test, seed, priors=priors,
                            generator_info=generator_info(generator, gen, weights), batch_size=batch_size,
                            shard_size=max(batch_size, 10_000), device=dev, overwrite=overwrite)


def lipschitz(generator: str, method: str = "sampling", weights: str | None = None, seed: int = 0,
              device: str | torch.device = DEFAULT_DEVICE, out: str | os.PathLike[str] | None = None,
              **options: Any) -> LipschitzResult:
    """Per-class local Lipschitz values of a generator spec (``options``: anchors, radius, method options)."""
    import dataclasses

    from intrinsic_robustness.generators.load import load_generator
    from intrinsic_robustness.lipschitz import estimate_lipschitz
    from intrinsic_robustness.runtime import resolve_device

    dev = resolve_device(device)
    gen = load_generator(generator, weights, dev)
    result = estimate_lipschitz(gen, method, seed=seed, device=dev, **options)
    where = {"generator": generator, "generator_weights": weights, "device": str(dev)}
    result = dataclasses.replace(result, parameters={**result.parameters, **where})
    if out is not None:
        result.save(out)
    return result


def train_generator(dataset: str, out: str | os.PathLike[str], epochs: int, seed: int = 0,
                    device: str | torch.device = DEFAULT_DEVICE, **options: Any) -> dict[str, Any]:
    """Train (or resume) the paper's ACGAN on real images; returns the ``training.json`` content."""
    from intrinsic_robustness.generators.train import train_acgan

    return train_acgan(dataset, out, epochs, seed=seed, device=device, **options)


def train_classifier(data: str | os.PathLike[str], method: str, out: str | os.PathLike[str], seed: int = 0,
                     device: str | torch.device = DEFAULT_DEVICE, **options: Any) -> dict[str, Any]:
    """Train a classifier on a generated dataset's train split; returns its saved ``config.json``."""
    from intrinsic_robustness.data.synthetic import load_dataset
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.storage import read_json
    from intrinsic_robustness.training import METHODS, fit

    METHODS.canonical(method)
    train = load_dataset(data, "train")
    if len(train) == 0:
        raise UserInputError(f"--data {data}: the train split is empty; generate with --n-train > 0")
    path = fit(train, method, seed=seed, device=device, out=out, **options)
    return read_json(path / "config.json")


def evaluate(classifier: str, data: str, threat: str, out: str | os.PathLike[str] | None = None,
             generator: str | None = None, attacks: str | Sequence[str] | None = None,
             eps: Sequence[float] | None = None, seed: int = 0, device: str | torch.device = DEFAULT_DEVICE,
             **options: Any) -> EvalResult:
    """Attack a classifier on a dataset under one threat model (per-example minimal norms)."""
    from intrinsic_robustness.evaluation import evaluate as run_evaluation
    from intrinsic_robustness.threat import DEFAULT_EPS

    return run_evaluation(classifier, data, generator=generator, threat=threat, attacks=attacks,
                          eps=tuple(eps) if eps else DEFAULT_EPS, seed=seed, device=device, out=out, **options)
