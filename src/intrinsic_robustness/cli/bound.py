"""``irob bound``: the intrinsic-robustness bound as a table, JSON, or a plot against risk."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from intrinsic_robustness.cli.app import app

if TYPE_CHECKING:
    from intrinsic_robustness.bound.result import BoundResult


def _table(result: BoundResult) -> None:
    """The result as a rich table on stdout: one row per (risk, eps), the side condition when a radius is known."""
    from rich.table import Table

    from intrinsic_robustness.cli.console import out

    out.print(result.title, markup=False, highlight=False, soft_wrap=True)
    show_side = result.radius is not None
    table = Table()
    for name in ("risk", "eps", result.kind):
        table.add_column(name, justify="right")
    if show_side:
        table.add_column("eps <= L_y r", justify="center")
    for row in result.rows:
        cells = [f"{row.risk:.6g}", f"{row.eps:.6g}", f"{row.bound:.6g}" + (" (trivial)" if row.trivial else "")]
        if show_side:
            cells.append("ok" if row.side_condition_ok else "[red]violated[/red]")
        table.add_row(*cells)
    out.print(table)
    if any(row.trivial for row in result.rows):
        out.print("(trivial): clipped at the clean accuracy 1 - risk, which any classifier's robust accuracy is "
                  "already below; the theorem adds nothing there", markup=False, highlight=False, soft_wrap=True)


@app.command("bound")
def bound_command(
    risk: Annotated[
        list[float], typer.Option("--risk", help="Error level(s) in [0, 1]; repeat for several.")
    ],
    eps: Annotated[
        list[float], typer.Option("--eps", help="L2 perturbation size(s) on the [0,1] pixel scale.")
    ],
    lipschitz: Annotated[
        list[float] | None,
        typer.Option("--lipschitz", help="One Lipschitz constant, or one per class (repeat the flag)."),
    ] = None,
    priors: Annotated[
        list[float] | None, typer.Option("--priors", help="Class priors (default uniform).")
    ] = None,
    condition: Annotated[
        str,
        typer.Option(
            "--condition", help="per_class: every class errs >= risk (T2); overall: only the total risk."
        ),
    ] = "per_class",
    num_classes: Annotated[
        int | None,
        typer.Option(
            "--num-classes",
            help="Number of classes (needed by --condition overall with one L and no priors).",
        ),
    ] = None,
    slack: Annotated[
        list[float] | None,
        typer.Option("--slack", help="Per-class measure delta_y where the Lipschitz property may fail."),
    ] = None,
    lipschitz_file: Annotated[
        Path | None,
        typer.Option(
            "--lipschitz-file", help="lipschitz.json from 'irob lipschitz': per-class L, slack and radius."
        ),
    ] = None,
    percentile: Annotated[
        str,
        typer.Option(
            "--percentile", help="Per-anchor statistic of the file: p95, p99, p999 or max (slack 0.05 ... 0)."
        ),
    ] = "p99",
    confidence: Annotated[
        float | None,
        typer.Option(
            "--confidence", help="With --lipschitz-file: slack from a Clopper-Pearson limit at this joint confidence "
            "(e.g. 0.95) instead of the percentile's nominal one."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also draw the bound against risk (.png/.pdf/.svg).")
    ] = None,
) -> None:
    """Upper bound on the robustness of any classifier with the given risk, for each (risk, eps)."""
    from intrinsic_robustness.api import bound
    from intrinsic_robustness.cli.console import emit_json, err

    if plot is not None:
        import matplotlib

        matplotlib.use("Agg")  # a file, never a window
    result = bound(risk, eps, lipschitz=lipschitz, priors=priors, condition=condition, num_classes=num_classes,
                   slack=slack, lipschitz_file=lipschitz_file, percentile=percentile, confidence=confidence, plot=plot)
    if result.violated_eps:
        err.print(
            f"warning: eps {', '.join(f'{e:g}' for e in result.violated_eps)} exceed(s) L_y * r = "
            f"{result.side_condition_limit:.4g} for some class; the theorem's condition fails there, so those "
            "numbers are not implied by it",
            style="yellow", markup=False, highlight=False, soft_wrap=True,
        )
    if as_json:
        emit_json(result.to_dict())
        return
    _table(result)
    err.print(result.basis, markup=False, highlight=False, soft_wrap=True)
    if plot is not None:
        err.print(f"plot written to {plot}", markup=False, highlight=False)
