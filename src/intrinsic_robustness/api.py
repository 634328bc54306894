"""The Python face of every ``irob`` command: each command is a thin wrapper over one function here, with the
same defaults, so notebook and CLI cannot drift.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intrinsic_robustness.lipschitz.base import DEFAULT_METHOD
from intrinsic_robustness.runtime import DEFAULT_DEVICE

if TYPE_CHECKING:
    import torch

    from intrinsic_robustness.bound.result import BoundResult
    from intrinsic_robustness.concentration import ConcentrationResult
    from intrinsic_robustness.evaluation import EvalResult
    from intrinsic_robustness.lipschitz import LipschitzResult
    from intrinsic_robustness.pipeline.config import PipelineConfig

DEMO_CONFIG = "demo.toml"
PLOT_FORMATS = (".png", ".pdf", ".svg")


def demo_config_path() -> Path:
    """The demo config shipped inside the package (identical to ``configs/demo.toml`` in the repository)."""
    return Path(str(resources.files("intrinsic_robustness") / "configs" / DEMO_CONFIG))


def resolve_config(path: str | os.PathLike[str], overrides: Sequence[str] = (), device: str | None = None,
                   seed: int | None = None) -> PipelineConfig:
    """Load a config file, apply ``--set`` overrides, then ``--device`` and ``--seed`` if given."""
    from intrinsic_robustness.pipeline.config import load_config  # lazy: pydantic and the registries (torch)

    if device is not None:
        from intrinsic_robustness.pipeline.config import check_device

        device = check_device(device)
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
        seed: int | None = None, on_event: Callable[[Any], None] | None = None, trust_code: bool = False) -> Path:
    """Run or resume the pipeline; returns the run directory (``runs/<run.name>`` by default).

    ``trust_code``: let the config (and the run's own files) name user code (``package.module:factory``)."""
    from intrinsic_robustness.pipeline.config import PipelineConfig
    from intrinsic_robustness.pipeline.stages import run_pipeline

    if not isinstance(config, PipelineConfig):
        config = resolve_config(config, overrides, device, seed)
    elif overrides or device is not None or seed is not None:
        raise ValueError("pass overrides, device and seed with a config path, not with a PipelineConfig")
    if run_dir is not None and not os.fspath(run_dir).strip():
        from intrinsic_robustness.errors import UserInputError

        raise UserInputError("--run-dir '': empty; give a directory (default runs/<run.name>)")
    directory = Path(run_dir) if run_dir is not None else Path("runs") / config.run.name
    run_pipeline(config, directory, force=force, on_event=on_event, trust_code=trust_code)
    return directory


def report(run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Re-render the report of a run from its files (no model runs); given a ``report.json``, re-derive it."""
    from intrinsic_robustness.distributed import main_only
    from intrinsic_robustness.report import refresh_report, write_report

    if Path(run_dir).is_file():  # a report.json kept without its run: recompute what derives from its facts
        return main_only(refresh_report, run_dir, out)
    return main_only(write_report, run_dir, out)  # under torchrun rank 0 writes


def bound(risk: float | Sequence[float], eps: float | Sequence[float],
          lipschitz: float | Sequence[float] | None = None, priors: Sequence[float] | None = None,
          condition: str = "per_class", num_classes: int | None = None, slack: Sequence[float] | None = None,
          lipschitz_file: str | os.PathLike[str] | None = None, percentile: str = "p99",
          confidence: float | None = None, plot: str | os.PathLike[str] | None = None) -> BoundResult:
    """The bound at every (risk, eps) pair, L given or from ``irob lipschitz``'s file; ``plot``: also write
    the figure (.png/.pdf/.svg). An estimate unless L is certified (``result.kind``)."""
    from intrinsic_robustness.bound import CONDITIONS
    from intrinsic_robustness.bound.result import tabulate
    from intrinsic_robustness.errors import UserInputError

    if condition not in CONDITIONS:
        raise UserInputError(f"--condition {condition!r} is not one of {', '.join(CONDITIONS)}")
    if plot is not None:
        from intrinsic_robustness.storage import check_output

        check_output(plot, "--plot")
        if Path(plot).suffix.lower() not in PLOT_FORMATS:
            raise UserInputError(f"--plot {plot}: use a file name ending in {', '.join(PLOT_FORMATS)}")
    source = _bound_source(lipschitz, slack, lipschitz_file, percentile, confidence)
    result = tabulate(risk, eps, priors=priors, condition=condition, num_classes=num_classes,
                      confidence=confidence, **source)
    if plot is None:
        return result
    _write_figure(result.figure()[0], Path(plot))
    return dataclasses.replace(result, plot=str(plot))


def _bound_source(lipschitz: float | Sequence[float] | None, slack: Sequence[float] | None,
                  lipschitz_file: str | os.PathLike[str] | None, percentile: str,
                  confidence: float | None) -> dict[str, Any]:
    """Per-class L, slack, radius, where L came from and what the result rests on (flags or an estimate file)."""
    from intrinsic_robustness.errors import UserInputError

    if confidence is not None and lipschitz_file is None:
        raise UserInputError("--confidence needs --lipschitz-file (the per-anchor values it counts)")
    given = lipschitz is not None and not (isinstance(lipschitz, Sequence) and len(lipschitz) == 0)
    if lipschitz_file is None:
        if not given:
            raise UserInputError("--lipschitz is required (one value, or one per class), or pass --lipschitz-file")
        return {"lipschitz": lipschitz, "slack": list(slack) if slack else None, "radius": None,
                "lipschitz_source": "--lipschitz (given)",
                "basis": "L given on the command line: the bound is only as good as that L", "certificate": False}
    if given:
        raise UserInputError("pass either --lipschitz or --lipschitz-file, not both")
    if slack:
        raise UserInputError("--slack comes from --lipschitz-file's percentile; do not pass both")
    from intrinsic_robustness.lipschitz.result import bound_basis

    basis = bound_basis(os.fspath(lipschitz_file), percentile, confidence)
    return {"lipschitz": [float(v) for v in basis.lipschitz], "slack": [float(v) for v in basis.slack],
            "radius": float(basis.radius), "lipschitz_source": f"{lipschitz_file} ({basis.method}, {percentile})",
            "basis": basis.describe(), "certificate": basis.certificate}


def _write_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure atomically in the format its suffix names, then close it."""
    import matplotlib.pyplot as plt

    from intrinsic_robustness.storage import atomic_path

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:].lower(), dpi=130)
    finally:
        plt.close(fig)


def demo(run_dir: str | os.PathLike[str] = "runs/demo", device: str | None = None, seed: int | None = None,
         on_event: Callable[[Any], None] | None = None, trust_code: bool = False) -> Path:
    """Run the packaged demo config; returns the path of ``report.html``."""
    directory = run(demo_config_path(), run_dir, device=device, seed=seed, on_event=on_event, trust_code=trust_code)
    return directory / "report" / "report.html"


def generate(generator: str, out: str | os.PathLike[str], n_train: int, n_test: int, seed: int = 0,
             weights: str | None = None, priors: Sequence[float] | None = None, batch_size: int = 500,
             device: str | torch.device = DEFAULT_DEVICE, overwrite: bool = False,
             trust_code: bool = False) -> dict[str, Any]:
    """Load the generator named by ``generator`` and write a dataset; the manifest records spec and checksum."""
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.generators.load import generator_info, load_generator
    from intrinsic_robustness.runtime import resolve_device
    from intrinsic_robustness.storage import check_output, clean_on_failure

    check_output(out, "--out", kind="directory")
    if Path(out).exists() and not overwrite:
        raise UserInputError(f"{out} already exists; choose another --out or pass --force to replace it")
    if batch_size < 1:
        raise UserInputError(f"--batch-size {batch_size}: expected a positive integer")
    dev = resolve_device(device)
    gen = load_generator(generator, weights, device=dev, trust_code=trust_code)
    if priors is not None and len(priors) != int(gen.num_classes):
        raise UserInputError(f"--priors: {len(priors)} values for a generator with {gen.num_classes} classes")
    with clean_on_failure(out):
        return generate_dataset(gen, out, n_train, n_test, seed, priors=priors,
                                generator_info=generator_info(generator, gen, weights), batch_size=batch_size,
                                shard_size=max(batch_size, 10_000), device=dev, overwrite=overwrite)


def lipschitz(generator: str, method: str = DEFAULT_METHOD, weights: str | None = None, seed: int = 0,
              device: str | torch.device = DEFAULT_DEVICE, out: str | os.PathLike[str] | None = None,
              trust_code: bool = False, **options: Any) -> LipschitzResult:
    """Per-class local Lipschitz values of a generator spec (``options``: ``anchors_per_class``, the run's
    ``radius``, ``classes``, and ``options={...}``: the method's own options, apart from the run's)."""
    import dataclasses

    from intrinsic_robustness.generators.load import load_generator
    from intrinsic_robustness.lipschitz import estimate_lipschitz
    from intrinsic_robustness.runtime import check_memory, resolve_device
    from intrinsic_robustness.storage import check_output

    if out is not None:
        check_output(out, "--out")
    dev = resolve_device(device)
    gen = load_generator(generator, weights, dev, trust_code=trust_code)
    anchors = options.get("anchors_per_class")
    if isinstance(anchors, int) and anchors > 0:
        check_memory(4.0 * anchors * int(gen.latent_dim) * 4, f"--anchors-per-class {anchors}")
    result = estimate_lipschitz(gen, method, seed=seed, device=dev, **options)
    where = {"generator": generator, "generator_weights": weights, "device": str(dev)}
    result = dataclasses.replace(result, parameters={**result.parameters, **where})
    if out is not None:
        from intrinsic_robustness.distributed import main_only

        main_only(result.save, out)  # under torchrun every rank holds the gathered result; rank 0 writes it
    return result


def train_generator(dataset: str, out: str | os.PathLike[str], epochs: int, seed: int = 0,
                    device: str | torch.device = DEFAULT_DEVICE, family: str = "acgan",
                    **options: Any) -> dict[str, Any]:
    """Train (or resume) a generator of ``family`` (the paper's ACGAN, or ``flow``) on real images; returns the
    ``training.json`` content. One process at a time may write ``out`` (a second is refused, naming the holder)."""
    from intrinsic_robustness.generators.train import train_family, trainer
    from intrinsic_robustness.storage import check_output, clean_on_failure, exclusive

    trainer(family)
    check_output(out, "--out", kind="directory")
    with clean_on_failure(out), exclusive(out, "generator output"):
        from intrinsic_robustness.distributed import main_only  # not sharded: under torchrun rank 0 trains

        return main_only(train_family, family, dataset, out, epochs, seed=seed, device=device, **options)


def train_classifier(data: str | os.PathLike[str], method: str, out: str | os.PathLike[str], seed: int = 0,
                     device: str | torch.device = DEFAULT_DEVICE, image_size: int | None = None,
                     n_train: int | None = None, **options: Any) -> dict[str, Any]:
    """Train a classifier on the train split of a generated dataset directory or of real images (``digits``,
    ``mnist``, ``fashion-mnist``, ``idx:DIR``; at ``image_size``, default their own size), optionally on its
    first ``n_train`` images; returns the saved ``config.json``. One process at a time may write ``out``."""
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.storage import check_output, clean_on_failure, exclusive, read_json
    from intrinsic_robustness.training import METHODS, fit

    METHODS.canonical(method)
    check_output(out, "--out", kind="directory")
    train = training_data(data, image_size)
    if n_train is not None:
        if n_train < 1:
            raise UserInputError(f"--n-train {n_train}: expected a positive number of training images")
        train = train.head(min(int(n_train), len(train)))
    if len(train) == 0:
        raise UserInputError(f"--data {data}: the train split is empty; generate with --n-train > 0")
    with clean_on_failure(out), exclusive(out, "classifier output"):
        path = fit(train, method, seed=seed, device=device, out=out, **options)
    return read_json(path / "config.json")


def training_data(data: str | os.PathLike[str], image_size: int | None = None) -> Any:
    """The train split of a generated dataset directory, or of a named real dataset (no latents)."""
    from intrinsic_robustness.data.real import RealDataset, is_real_name
    from intrinsic_robustness.data.synthetic import load_dataset
    from intrinsic_robustness.errors import UserInputError

    if not (Path(data) / "manifest.json").is_file() and not is_real_name(str(data)):
        raise UserInputError(f"--data {data}: neither a dataset directory written by 'irob generate' (no "
                             "manifest.json there) nor real images; expected digits, fashion-mnist, mnist or idx:DIR")
    if (Path(data) / "manifest.json").is_file():
        if image_size is not None:
            raise UserInputError(f"--image-size {image_size}: only real data (digits, mnist, fashion-mnist, "
                                 "idx:DIR) is resized; a generated dataset keeps its generator's size")
        return load_dataset(data, "train")
    if image_size is not None and image_size < 4:
        raise UserInputError(f"--image-size {image_size}: expected at least 4 pixels")
    return RealDataset.load(str(data), "train", image_size)


def evaluate(classifier: str, data: str, threat: str, out: str | os.PathLike[str] | None = None,
             generator: str | None = None, attacks: str | Sequence[str] | None = None,
             eps: Sequence[float] | None = None, seed: int = 0, device: str | torch.device = DEFAULT_DEVICE,
             trust_code: bool = False, **options: Any) -> EvalResult:
    """Attack a classifier on a dataset under one threat model (per-example minimal norms); one process at a
    time may write ``out``. ``trust_code``: let the classifier's config.json or the dataset manifest name code."""
    from intrinsic_robustness.evaluation import evaluate as run_evaluation
    from intrinsic_robustness.threat import DEFAULT_EPS

    return run_evaluation(classifier, data, generator=generator, threat=threat, attacks=attacks,
                          eps=tuple(eps) if eps is not None else DEFAULT_EPS, seed=seed, device=device, out=out,
                          trust_code=trust_code, **options)


def concentration(data: str | os.PathLike[str], alpha: Sequence[float], eps: Sequence[float], method: str = "all",
                  split_seed: int = 0, device: str | torch.device = DEFAULT_DEVICE,
                  out: str | os.PathLike[str] | None = None, image_size: int | None = None,
                  **options: Any) -> ConcentrationResult:
    """Concentration of a dataset's images (real name or generated directory): regions fitted on one seeded half,
    measured on the other (``options``: components, powers, max_balls, max_centres, knn, chunk)."""
    from intrinsic_robustness.concentration import estimate_concentration, load_sample
    from intrinsic_robustness.storage import check_output

    if out is not None:
        check_output(out, "--out")
    points, info = load_sample(data, image_size)
    result = estimate_concentration(points, alpha, eps, method, split_seed, device, data=info, **options)
    if out is not None:
        result.save(out)
    return result
