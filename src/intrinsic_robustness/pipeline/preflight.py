"""The checks of a pipeline config that need more than its values: run before any stage writes, each failure one
line naming the config file and key. User code the config names needs ``trust_code`` (given on the command
line, never by a file); the device must exist; the generator must load (or its training data be there) and
have one class per entry of ``dataset.priors``; the dataset and the Lipschitz anchors must fit the disk and
memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.pipeline.config import PipelineConfig


def code_named(config: PipelineConfig) -> list[tuple[str, str]]:
    """``(key, spec)`` of every piece of user code (``package.module:factory``) the config names."""
    from intrinsic_robustness.plugins import is_factory_spec

    named = [("generator.spec", config.generator.spec)] if config.generator.source == "load" else []
    named += [(f"classifiers.{i}.arch", c.arch or "") for i, c in enumerate(config.classifiers)]
    return [(key, spec) for key, spec in named if is_factory_spec(spec)]


def check_before_run(config: PipelineConfig, trust_code: bool = False,
                     run_dir: str | os.PathLike[str] | None = None, run_code: bool = True) -> None:
    """What the values alone cannot show, checked before any stage writes, each failure naming its key: user
    code named by the config needs ``trust_code`` (from the command line, never from a file), the device
    exists, the generator loads (or its training data is there), ``dataset.priors`` has one entry per class,
    and the dataset and Lipschitz anchors fit the disk and memory. ``run_code=False`` (``irob config show``)
    skips what only user code could tell."""
    from intrinsic_robustness.plugins import require_trust
    from intrinsic_robustness.runtime import check_memory, resolve_device

    source = config.source
    for key, spec in code_named(config) if run_code else ():
        require_trust(f"{source} {key}", spec, trust_code)
    _keyed(source, "run.device", resolve_device, config.run.device)
    facts = _generator_facts(config, trust_code and run_code, run_code)
    if facts is None:
        return
    classes, latent_dim, pixels = facts
    priors = config.dataset.priors
    if priors is not None and len(priors) != classes:
        raise UserInputError(f"{source}: dataset.priors: {len(priors)} values for a generator with {classes} "
                             f"classes; give {classes}")
    anchors = config.lipschitz.anchors_per_class
    check_memory(float(anchors) * latent_dim * 4 * 4, f"{source}: lipschitz.anchors_per_class = {anchors}")
    if run_dir is not None and not (Path(run_dir) / "dataset" / "manifest.json").is_file():  # not yet written
        from intrinsic_robustness.storage import check_free_space

        n = config.dataset.n_train + config.dataset.n_test
        check_free_space(run_dir, float(n) * (pixels + latent_dim + 2) * 4,
                         f"{source}: dataset.n_train + dataset.n_test = {n}")


def _keyed(source: str, key: str, check: Any, *args: Any) -> Any:
    """``check(*args)``, its one-line error prefixed by the config file and key (not a command-line flag)."""
    try:
        return check(*args)
    except UserInputError as exc:
        text = str(exc)
        raise type(exc)(text if text.startswith(f"{source}") else f"{source}: {key}: {text}") from None


def _generator_facts(config: PipelineConfig, trust_code: bool, run_code: bool = True) -> tuple[int, int, int] | None:
    """(classes, latent size, pixels per image) of the generator the run will use (None: only code could say)."""
    section = config.generator
    if section.source == "train":
        from intrinsic_robustness.data.real import class_count

        classes = _keyed(config.source, "generator.data", class_count, section.data)
        if getattr(section, "family", "acgan") == "acgan":  # its layers halve the image twice
            from intrinsic_robustness.generators.acgan import _check_shape

            try:
                _check_shape((1, section.image_size, section.image_size))
            except ValueError as exc:
                raise UserInputError(f"{config.source}: generator.image_size = {section.image_size}: {exc}; choose "
                                     "a multiple of 4 (e.g. 16 or 28)") from None
        return classes, section.latent_dim, section.image_size ** 2
    from intrinsic_robustness.generators.load import load_generator

    if section.weights and not Path(section.weights).expanduser().is_file():
        raise UserInputError(f"{config.source}: generator.weights: {section.weights}: file not found")
    from intrinsic_robustness.plugins import UntrustedCode, is_factory_spec

    if not run_code and is_factory_spec(section.spec):
        return None
    try:
        gen = _keyed(config.source, "generator.spec", load_generator, section.spec, section.weights or None, "cpu",
                     trust_code, f"{config.source} generator.spec")
    except UntrustedCode:
        if run_code:
            raise
        return None
    pixels = 1
    for size in gen.image_shape:
        pixels *= int(size)
    return int(gen.num_classes), int(gen.latent_dim), pixels
