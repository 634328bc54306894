"""The Python face of the pipeline commands: ``irob run``, ``irob report``, ``irob demo`` and
``irob config show`` are thin wrappers over these functions, so notebook and CLI cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from intrinsic_robustness.config import PipelineConfig, load_config

DEMO_CONFIG = "demo.toml"


def demo_config_path() -> Path:
    """The demo config shipped inside the package (identical to ``configs/demo.toml`` in the repository)."""
    return Path(str(resources.files("intrinsic_robustness") / "configs" / DEMO_CONFIG))


def resolve_config(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    device: str | None = None,
    seed: int | None = None,
) -> PipelineConfig:
    """Load a config file, apply ``--set`` overrides, then ``--device`` and ``--seed`` if given."""
    extra = list(overrides)
    if device is not None:
        extra.append(f'run.device="{device}"')
    if seed is not None:
        extra.append(f"run.seed={int(seed)}")
    return load_config(path, extra)


def run(
    config: PipelineConfig | str | os.PathLike[str],
    run_dir: str | os.PathLike[str] | None = None,
    force: Sequence[str] = (),
    overrides: Sequence[str] = (),
    device: str | None = None,
    seed: int | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> Path:
    """Run or resume the pipeline; returns the run directory (``runs/<run.name>`` by default)."""
    from intrinsic_robustness.pipeline import run_pipeline

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


def demo(
    run_dir: str | os.PathLike[str] = "runs/demo",
    device: str | None = None,
    seed: int | None = None,
    on_event: Callable[[Any], None] | None = None,
) -> Path:
    """Run the packaged demo config; returns the path of ``report.html``."""
    directory = run(demo_config_path(), run_dir, device=device, seed=seed, on_event=on_event)
    return directory / "report" / "report.html"
