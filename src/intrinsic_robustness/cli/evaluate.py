"""``irob evaluate``: attack a classifier under one threat model and write per-example minimal norms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, TrustOpt, app
from intrinsic_robustness.cli.choices import RegistryCommand
from intrinsic_robustness.runtime import DEFAULT_DEVICE


@app.command("evaluate", cls=RegistryCommand)
def evaluate_command(
    classifier: Annotated[str, typer.Option("--classifier", help="Directory saved by 'irob train-classifier' "
                                            "or 'package.module:factory'.")],
    data: Annotated[str, typer.Option("--data", help="Dataset directory made by 'irob generate' (test split), "
                                      "or a real-data name (digits, fashion-mnist, mnist, idx:DIR).")],
    out: Annotated[Path, typer.Option("--out", help="JSON file to write (norms go to the .safetensors beside it).")],
    threat: Annotated[str, typer.Option("--threat", help="{threats}.")],
    generator: Annotated[str | None, typer.Option("--generator", help="Generator spec (in-distribution; default: "
                                                  "the one recorded in the dataset manifest).")] = None,
    attack: Annotated[str | None, typer.Option("--attack", help="NAME[,NAME...]: {attacks}; default: the "
                                               "strongest ensemble for the threat.")] = None,
    eps: Annotated[list[float] | None, typer.Option("--eps", help="Budget(s) for robust accuracy; repeatable.")]
    = None,
    n: Annotated[int | None, typer.Option("--n", help="Evaluate only the first N test examples.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per attack batch (also the resume "
                                            "unit).")] = 100,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Real data only: resize the test images "
                                                   "to this many pixels a side (default: their own size).")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
    trust_code: TrustOpt = False,
) -> None:
    """Attack every test example; write natural error, robust accuracy per eps and minimal norms to FILE.json."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out as console

    result = api.evaluate(classifier, data, threat, out=out, generator=generator, attacks=attack, eps=eps, seed=seed,
                          device=device, n=n, batch_size=batch_size, trust_code=trust_code, image_size=image_size)
    console.print(f"{result.threat}: attacks {', '.join(result.attacks)}; n={result.n}; natural error "
                  f"{result.natural_error:.3f}; {result.seconds:.1f} s")
    console.print(_table(result))
    console.print(f"wrote {out}")


def _table(result):  # noqa: ANN001, ANN202 - rich stays out of the import path of `irob --help`
    from rich.table import Table

    table = Table()
    table.add_column("eps", justify="right")
    table.add_column(f"robust accuracy (95% CI, n={result.n})", justify="right")
    if result.certified_accuracy is not None:
        table.add_column("certified accuracy (95% CI)", justify="right")
    for key, value in result.robust_accuracy.items():
        row = [key, _with_ci(value, result.n)]
        if result.certified_accuracy is not None:
            row.append(_with_ci(result.certified_accuracy[key], result.n))
        table.add_row(*row)
    return table


def _with_ci(value: float, n: int) -> str:
    """An accuracy with its Clopper-Pearson interval, as a table cell."""
    from intrinsic_robustness.stats import proportion_ci

    ci = proportion_ci(value, n)
    return f"{value:.3f}" if ci is None else f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
