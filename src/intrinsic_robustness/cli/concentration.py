"""``irob concentration``: the generator-free concentration estimate of a dataset (half-spaces, unions of balls)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from intrinsic_robustness.cli.app import DeviceOpt, app
from intrinsic_robustness.runtime import DEFAULT_DEVICE


@app.command("concentration")
def concentration_command(
    alpha: Annotated[list[float], typer.Option("--alpha", help="Risk level(s) in (0, 1): the region holds at "
                                               "least this fraction of the sample; repeatable.")],
    eps: Annotated[list[float], typer.Option("--eps", help="L2 perturbation size(s) on the [0,1] pixel scale; "
                                             "repeatable.")],
    data: Annotated[str, typer.Option("--data", help="digits, mnist, fashion-mnist, idx:DIR (train and test "
                                      "images), or a dataset directory from 'irob generate'.")] = "digits",
    method: Annotated[str, typer.Option("--method", help="halfspace, balls, or all (both, best marked).")] = "all",
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the fit / held-out split.")] = 0,
    max_balls: Annotated[int | None, typer.Option("--balls", help="balls: the most balls T in a union (default 100, "
                                                  "or the fitting half's size if smaller).")] = None,
    max_centres: Annotated[int, typer.Option("--max-centres", help="balls: candidate centres per k (the densest "
                                             "fitting points).")] = 2000,
    knn: Annotated[list[int] | None, typer.Option("--knn", help="balls: k values (radius = k-th neighbour "
                                                  "distance) to search; default from alpha and --balls.")] = None,
    components: Annotated[int, typer.Option("--components", help="halfspace: principal components tried.")] = 50,
    chunk: Annotated[int, typer.Option("--chunk", help="Rows per distance matrix product (memory vs "
                                       "speed).")] = 1024,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Real data only: resize to this many "
                                                   "pixels a side (default: their own size).")] = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout instead of a table.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the JSON (with every region) here.")] = None,
) -> None:
    """Estimate, from samples, how concentrated the data is: 1 - adv_risk_test estimates the best robustness of any
    classifier with risk >= alpha (fitted on one half, measured on the other; an estimate, not a bound)."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import emit_json, err

    result = api.concentration(data, alpha, eps, method, split_seed, device, out=out, image_size=image_size,
                               max_balls=max_balls, max_centres=max_centres, knn=knn, components=components,
                               chunk=chunk)
    if as_json:
        emit_json(result.to_dict())
    else:
        _table(result.to_dict())
    if out is not None:
        err.print(f"wrote {out}", markup=False, highlight=False)


def _table(payload: dict[str, Any]) -> None:
    from rich.table import Table

    from intrinsic_robustness.cli.console import out

    n = payload["n_test"]
    out.print(f"concentration of {payload['data'].get('data')}: regions fitted on {payload['n_train']} points, "
              f"measured on {n} held-out ones (split seed {payload['split_seed']}; 95% Clopper-Pearson intervals); "
              "an estimate, not a bound", markup=False, highlight=False, soft_wrap=True)
    table = Table()
    for name in ("method", "alpha", "eps", "risk test", "adv risk test [95% CI]", "1 - adv"):
        table.add_column(name, justify="right")
    for row in payload["results"]:
        lo, hi = row["adv_risk_test_ci"]
        mark = (" !" if row.get("risk_short") else "") + (" *" if row.get("best") else "")
        table.add_row(row["method"] + mark, f"{row['alpha']:g}", f"{row['eps']:g}", f"{row['risk_test']:.4f}",
                      f"{row['adv_risk_test']:.4f} [{lo:.3f},{hi:.3f}]", f"{row['robustness_test']:.4f}")
    out.print(table)
    if any(row.get("best") for row in payload["results"]):
        out.print("*: the smallest held-out adv risk at that (alpha, eps) among regions not marked !", markup=False,
                  highlight=False)
    if any(row.get("risk_short") for row in payload["results"]):
        out.print("!: held-out risk clearly below alpha (95% interval under it): that region holds less than alpha, "
                  "so its adv risk flatters the estimate", markup=False, highlight=False, soft_wrap=True)
