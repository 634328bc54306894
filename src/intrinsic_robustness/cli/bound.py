"""``irob bound``: the intrinsic-robustness bound as a table, JSON, or a plot against risk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from intrinsic_robustness.cli.app import app
from intrinsic_robustness.errors import UserInputError

PLOT_FORMATS = (".png", ".pdf", ".svg")


def _lipschitz_source(
    lipschitz: list[float] | None, slack: list[float] | None, lipschitz_file: Path | None, percentile: str,
    confidence: float | None = None,
) -> dict[str, Any]:
    """Per-class L, slack, radius and a label saying where L came from (flags or an estimate file)."""
    if confidence is not None and lipschitz_file is None:
        raise UserInputError("--confidence needs --lipschitz-file (the per-anchor values it counts)")
    if lipschitz_file is None:
        if not lipschitz:
            raise UserInputError(
                "--lipschitz is required (one value, or one per class), or pass --lipschitz-file"
            )
        return {
            "lipschitz": list(lipschitz),
            "slack": list(slack) if slack else None,
            "radius": None,
            "label": "--lipschitz (given)",
            "basis": "L given on the command line: the bound is only as good as that L",
            "certificate": False,
        }
    if lipschitz:
        raise UserInputError("pass either --lipschitz or --lipschitz-file, not both")
    if slack:
        raise UserInputError("--slack comes from --lipschitz-file's percentile; do not pass both")
    from intrinsic_robustness.lipschitz.result import bound_basis

    basis = bound_basis(str(lipschitz_file), percentile, confidence)
    return {
        "lipschitz": [float(v) for v in basis.lipschitz],
        "slack": [float(v) for v in basis.slack],
        "radius": float(basis.radius),
        "label": f"{lipschitz_file} ({basis.method}, {percentile})",
        "basis": basis.describe(),
        "certificate": basis.certificate,
    }


def _plot(path: Path, eps: list[float], risks: list[float], kwargs: dict[str, Any], title: str) -> None:
    """Bound against risk on a fine grid, one line per eps, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from intrinsic_robustness.bound import intrinsic_robustness
    from intrinsic_robustness.storage import atomic_path

    grid = np.linspace(0.0, 1.0, 401)
    values = np.atleast_2d(intrinsic_robustness(grid[:, None], np.asarray(eps)[None, :], **kwargs))
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(grid, 1 - grid, color="0.6", linestyle="--", linewidth=1, label="1 - risk (eps = 0)")
    for i, e in enumerate(eps):
        ax.plot(grid, values[:, i], label=f"eps = {e:g}")
    chosen = np.atleast_2d(
        intrinsic_robustness(np.asarray(risks)[:, None], np.asarray(eps)[None, :], **kwargs)
    )
    ax.scatter(np.repeat(risks, len(eps)), chosen.ravel(), color="black", s=12, zorder=3)
    ax.set(
        xlabel="risk (error of the classifier)",
        ylabel="robustness upper bound",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=title,
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:], dpi=130)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], title: str, show_side: bool, kind: str = "estimate") -> None:
    from rich.table import Table

    from intrinsic_robustness.cli.console import out

    out.print(title, markup=False, highlight=False, soft_wrap=True)
    table = Table()
    for name in ("risk", "eps", kind):
        table.add_column(name, justify="right")
    if show_side:
        table.add_column("eps <= L_y r", justify="center")
    for row in rows:
        cells = [f"{row['risk']:.6g}", f"{row['eps']:.6g}",
                 f"{row['bound']:.6g}" + (" (trivial)" if row["trivial"] else "")]
        if show_side:
            cells.append("ok" if row["side_condition_ok"] else "[red]violated[/red]")
        table.add_row(*cells)
    out.print(table)
    if any(row["trivial"] for row in rows):
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
    import numpy as np

    from intrinsic_robustness.bound import CONDITIONS, intrinsic_robustness, side_condition_limit, side_condition_ok
    from intrinsic_robustness.cli.console import emit_json, err

    if condition not in CONDITIONS:
        raise UserInputError(f"--condition {condition!r} is not one of {', '.join(CONDITIONS)}")
    if plot is not None:
        from intrinsic_robustness.storage import check_output

        check_output(plot, "--plot")
        if plot.suffix.lower() not in PLOT_FORMATS:
            raise UserInputError(f"--plot {plot}: use a file name ending in {', '.join(PLOT_FORMATS)}")
    source = _lipschitz_source(lipschitz, slack, lipschitz_file, percentile, confidence)
    kwargs = {
        "lipschitz": source["lipschitz"],
        "priors": priors,
        "condition": condition,
        "slack": source["slack"],
        "num_classes": num_classes,
    }
    values = np.atleast_2d(
        intrinsic_robustness(np.asarray(risk)[:, None], np.asarray(eps)[None, :], **kwargs)
    )
    side = [side_condition_ok(e, source["lipschitz"], source["radius"]) for e in eps]
    rows = [
        {"risk": float(r), "eps": float(e), "bound": float(values[i, j]), "side_condition_ok": side[j],
         "trivial": bool(values[i, j] >= 1.0 - float(r) - 1e-12)}  # clipped at clean accuracy: says nothing more
        for i, r in enumerate(risk)
        for j, e in enumerate(eps)
    ]
    bad = [e for e, ok in zip(eps, side, strict=True) if ok is False]
    if bad:
        err.print(
            f"warning: eps {', '.join(f'{e:g}' for e in bad)} exceed(s) L_y * r = "
            f"{side_condition_limit(source['lipschitz'], source['radius']):.4g} for some class; the theorem's "
            "condition fails there, so those numbers are not implied by it",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    kind = "bound" if source["certificate"] else "estimate"  # a bound only when its L is certified
    title = (
        f"{condition} {kind}; L from {source['label']}: {', '.join(f'{v:.4g}' for v in source['lipschitz'])}"
    )
    if source["slack"]:
        title += f"; slack {', '.join(f'{v:.4g}' for v in source['slack'])}"
    if plot is not None:
        _plot(plot, list(eps), list(risk), kwargs, title)
    if as_json:
        payload = {
            "results": rows,
            "condition": condition,
            "lipschitz": source["lipschitz"],
            "lipschitz_source": source["label"],
            "priors": list(priors) if priors else None,
            "slack": source["slack"],
            "radius": source["radius"],
            "confidence": confidence,
            "basis": source["basis"],
            "certificate": source["certificate"],
            "kind": kind,
            "num_classes": num_classes,
            "plot": str(plot) if plot is not None else None,
        }
        emit_json(payload)
    else:
        _table(rows, title, source["radius"] is not None, kind)
        err.print(source["basis"], markup=False, highlight=False, soft_wrap=True)
        if plot is not None:
            err.print(f"plot written to {plot}", markup=False, highlight=False)
