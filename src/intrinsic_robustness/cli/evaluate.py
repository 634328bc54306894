"""``irob evaluate``: attack a classifier under one threat model and write per-example minimal norms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, TrustOpt, app
from intrinsic_robustness.runtime import DEFAULT_DEVICE


@app.command("evaluate")
def evaluate_command(
    classifier: Annotated[str, typer.Option("--classifier", help="Directory saved by 'irob train-classifier' "
                                            "or 'package.module:factory'.")],
    data: Annotated[str, typer.Option("--data", help="Dataset directory made by 'irob generate' (test split), "
                                      "or a real-data name (digits, fashion-mnist, mnist, idx:DIR).")],
    out: Annotated[Path, typer.Option("--out", help="JSON file to write (norms go to the .safetensors beside it).")],
    threat: Annotated[str, typer.Option("--threat", help="unconstrained or in-distribution.")],
    generator: Annotated[str | None, typer.Option("--generator", help="Generator spec (in-distribution; default: "
                                                  "the one recorded in the dataset manifest).")] = None,
    attack: Annotated[str | None, typer.Option("--attack", help="NAME[,NAME...]: pgd, fmn, autoattack "
                                               "(unconstrained), latent (in-distribution); default: the strongest "
                                               "ensemble for the threat.")] = None,
    eps: Annotated[list[float] | None, typer.Option("--eps", help="Budget(s) for robust accuracy; repeatable.")]
    = None,
    n: Annotated[int | None, typer.Option("--n", help="Evaluate only the first N test examples.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per attack batch (also the resume "
                                            "unit).")] = 100,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
    trust_code: TrustOpt = False,
) -> None:
    """Attack every test example; write natural error, robust accuracy per eps and minimal norms to FILE.json."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import out as console

    result = api.evaluate(classifier, data, threat, out=out, generator=generator, attacks=attack, eps=eps, seed=seed,
                          device=device, n=n, batch_size=batch_size, trust_code=trust_code)
    console.print(f"{result.threat}: attacks {', '.join(result.attacks)}; n={result.n}; natural error "
                  f"{result.natural_error:.3f}; {result.seconds:.1f} s")
    console.print(_table(result))
    console.print(f"wrote {out}")


def _table(result):  # noqa: ANN001, ANN202 - rich stays out of the import path of `irob --help`
    from rich.table import Table

    table = Table()
    table.add_column("eps", justify="right")
    table.add_column("robust accuracy", justify="right")
    if result.certified_accuracy is not None:
        table.add_column("certified accuracy", justify="right")
    for key, value in result.robust_accuracy.items():
        row = [key, f"{value:.3f}"]
        if result.certified_accuracy is not None:
            row.append(f"{result.certified_accuracy[key]:.3f}")
        table.add_row(*row)
    return table
