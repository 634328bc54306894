"""``irob lipschitz``: per-class local Lipschitz estimates of a generator, written as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, app


@app.command("lipschitz")
def lipschitz_command(
    generator: Annotated[str, typer.Option("--generator", help="Generator spec: irob directory, "
                                           "'package.module:factory', or 'affine'.")],
    out: Annotated[Path, typer.Option("--out", help="JSON file to write.")],
    method: Annotated[str, typer.Option("--method", help="sampling (the paper's) or gradient.")] = "sampling",
    anchors_per_class: Annotated[int, typer.Option("--anchors-per-class",
                                                   help="Anchors z ~ N(0, I) per class.")] = 100,
    radius: Annotated[float, typer.Option("--radius", help="Latent radius r of the local property.")] = 0.5,
    neighbors: Annotated[int, typer.Option("--neighbors", help="Neighbours per anchor (sampling).")] = 2000,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    generator_weights: Annotated[str | None, typer.Option("--generator-weights",
                                                          help="Weights file for the generator.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Latents per decode call (memory only).")]
    = 1024,
    power_iters: Annotated[int, typer.Option("--power-iters", help="Power iterations (gradient).")] = 10,
    ascent_steps: Annotated[int, typer.Option("--ascent-steps", help="Ascent steps per start (gradient).")]
    = 12,
    restarts: Annotated[int, typer.Option("--restarts", help="Random ascent starts (gradient).")] = 2,
) -> None:
    """Estimate each class's local Lipschitz constant (an estimate from below) and write FILE.json."""
    import dataclasses

    from intrinsic_robustness.cli.console import out as console
    from intrinsic_robustness.generators.load import load_generator
    from intrinsic_robustness.lipschitz import estimate_lipschitz
    from intrinsic_robustness.runtime import resolve_device

    dev = resolve_device(device)
    gen = load_generator(generator, generator_weights, dev)
    result = estimate_lipschitz(gen, method=method, anchors_per_class=anchors_per_class, radius=radius,
                                neighbors=neighbors, seed=seed, device=dev, batch_size=batch_size,
                                power_iters=power_iters, ascent_steps=ascent_steps, restarts=restarts)
    where = {"generator": generator, "generator_weights": generator_weights, "device": str(dev)}
    result = dataclasses.replace(result, parameters={**result.parameters, **where})
    result.save(out)
    console.print(_table(result))
    console.print(f"{result.note}.", style="dim")
    console.print(f"wrote {out}")


def _table(result):  # noqa: ANN001, ANN202 - rich types stay out of the import path of `irob --help`
    from rich.table import Table

    table = Table(title=f"local Lipschitz estimates ({result.method}, radius {result.radius:g}, "
                        f"{result.generator_evaluations:,} generator evaluations, {result.seconds:.1f} s)")
    table.add_column("class", justify="right")
    table.add_column("anchors", justify="right")
    for name in ("p95", "p99", "p999", "max", "mean"):
        table.add_column(name, justify="right")
    for c in result.per_class:
        table.add_row(str(c.label), str(len(c.values)), *(f"{getattr(c, k):.4f}"
                                                           for k in ("p95", "p99", "p999", "max", "mean")))
    return table
