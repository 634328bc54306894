"""``irob lipschitz``: per-class local Lipschitz estimates of a generator, written as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, TrustOpt, app
from intrinsic_robustness.cli.choices import RegistryCommand
from intrinsic_robustness.lipschitz.base import DEFAULT_ANCHORS, DEFAULT_METHOD, DEFAULT_RADIUS
from intrinsic_robustness.runtime import DEFAULT_DEVICE


@app.command("lipschitz", cls=RegistryCommand)
def lipschitz_command(
    generator: Annotated[str, typer.Option("--generator", help="Generator spec: irob directory, "
                                           "'package.module:factory' or a named one ({generators}).")],
    out: Annotated[Path, typer.Option("--out", help="JSON file to write.")],
    method: Annotated[str, typer.Option("--method", help="A registered method: {estimators}.")]
    = DEFAULT_METHOD,
    anchors_per_class: Annotated[int, typer.Option("--anchors-per-class",
                                                   help="Anchors z ~ N(0, I) per class.")] = DEFAULT_ANCHORS,
    radius: Annotated[float, typer.Option("--radius", help="Latent radius r of the local property.")]
    = DEFAULT_RADIUS,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
    generator_weights: Annotated[str | None, typer.Option("--generator-weights",
                                                          help="Weights file for the generator.")] = None,
    neighbors: Annotated[int | None, typer.Option("--neighbors", help="Neighbours per anchor (sampling methods).")]
    = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Latents per decode call (memory only).")]
    = None,
    power_iters: Annotated[int | None, typer.Option("--power-iters", help="Power iterations (gradient).")]
    = None,
    ascent_steps: Annotated[int | None, typer.Option("--ascent-steps", help="Ascent steps per start (gradient).")]
    = None,
    restarts: Annotated[int | None, typer.Option("--restarts", help="Random ascent starts (gradient).")]
    = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Equal radii in the quotient bound "
                                              "(certified-local).")] = None,
    refine: Annotated[int | None, typer.Option("--refine", help="Adaptively placed extra radii "
                                               "(certified-local).")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="KEY=VALUE: an option of the chosen "
                                                     "method, checked against its own names and types; repeatable "
                                                     "({estimator_options}). Apart from the run's --radius.")]
    = None,
    trust_code: TrustOpt = False,
) -> None:
    """Per-class local Lipschitz values of a generator (estimates from below unless certified) -> FILE.json."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out as console

    given = {"neighbors": neighbors, "batch_size": batch_size, "power_iters": power_iters,
             "ascent_steps": ascent_steps, "restarts": restarts, "steps": steps, "refine": refine}
    options = _estimator_options(method, {k: v for k, v in given.items() if v is not None}, option or [])
    result = api.lipschitz(generator, method, weights=generator_weights, seed=seed, device=device, out=out,
                           trust_code=trust_code, anchors_per_class=anchors_per_class, radius=radius,
                           options=options)
    console.print(_table(result))
    console.print(f"{result.note}.", style="dim")
    console.print(f"wrote {out}")


def _estimator_options(method: str, flags: dict[str, object], pairs: list[str]) -> dict[str, object]:
    """The method's own options: the named flags plus each ``--option KEY=VALUE``, checked against the method."""
    from intrinsic_robustness.errors import UserInputError
    from intrinsic_robustness.lipschitz.registry import ESTIMATORS

    cls = ESTIMATORS.get(method)
    parsed = cls.parse_options(pairs)
    both = sorted(set(flags) & set(parsed))
    if both:
        raise UserInputError(f"--option {both[0]}: also given as --{both[0].replace('_', '-')}; give it once")
    return {**flags, **parsed}


def _table(result):  # noqa: ANN001, ANN202 - rich types stay out of the import path of `irob --help`
    from rich.table import Table

    kind = "certified bounds" if result.certified else "estimates"
    table = Table(title=f"local Lipschitz {kind} ({result.method}, radius {result.radius:g}, "
                        f"{result.generator_evaluations:,} generator evaluations, {result.seconds:.1f} s)")
    table.add_column("class", justify="right")
    table.add_column("anchors", justify="right")
    for name in ("p95", "p99", "p999", "max", "mean"):
        table.add_column(name, justify="right")
    for c in result.per_class:
        table.add_row(str(c.label), str(len(c.values)), *(f"{getattr(c, k):.4f}"
                                                           for k in ("p95", "p99", "p999", "max", "mean")))
    return table
