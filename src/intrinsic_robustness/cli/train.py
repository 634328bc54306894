"""``irob train-classifier``: standard, PGD, TRADES or certified training on generated or real images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, app
from intrinsic_robustness.cli.choices import RegistryCommand
from intrinsic_robustness.runtime import DEFAULT_DEVICE

METHOD_HELP = "A registered training method: {methods}."


@app.command("train-classifier", cls=RegistryCommand)
def train_classifier(
    data: Annotated[str, typer.Option("--data", help="Dataset directory written by 'irob generate', or real "
                                      "images: digits, mnist, fashion-mnist, idx:DIR (train split).")],
    method: Annotated[str, typer.Option("--method", help=METHOD_HELP)],
    out: Annotated[Path, typer.Option("--out", help="Directory for config, weights, history, checkpoints.")],
    arch: Annotated[str, typer.Option("--arch", help="auto (the paper's choice), a registered "
                                                     "architecture ({architectures}) or package.module:factory.")]
    = "auto",
    eps: Annotated[float | None, typer.Option("--eps", help="Training L2 radius (paper: 3.0; certified 2.0).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs (paper: 60 or 100).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Batch size (paper: 128; certified 50).")
                          ] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Initial learning rate (x0.1, x0.01, x0.001 from 50%, "
                                                           "75%, 90% of epochs).")] = None,
    num_steps: Annotated[int | None, typer.Option("--num-steps", help="Inner attack steps (paper: 40 for 28x28, "
                                                                       "10 for 32x32).")] = None,
    step_size: Annotated[float | None, typer.Option("--step-size", help="Inner attack step (paper: 0.5).")] = None,
    beta: Annotated[float | None, typer.Option("--beta", help="TRADES weight of the KL term (paper: 6.0).")] = None,
    holdout: Annotated[int | None, typer.Option("--holdout", help="Training images kept aside for the per-epoch "
                                                                   "clean/PGD error (default min(500, N/10)).")] = None,
    ramp: Annotated[float | None, typer.Option("--ramp", help="Fraction of all batches over which eps rises from "
                                                   "--eps-start to --eps, per batch (certified paper: 1/3).")] = None,
    eps_start: Annotated[float | None, typer.Option("--eps-start", help="eps at the first batch of the ramp "
                                                                         "(certified paper: 0.05).")] = None,
    warmup: Annotated[float | None, typer.Option("--warmup", help="Fraction of all batches with a linear learning-"
                                                           "rate warm-up (paper: 0).")] = None,
    clip_norm: Annotated[float | None, typer.Option("--clip-norm", help="Clip the gradient's L2 norm to this "
                                                                         "(paper: no clipping).")] = None,
    clean_weight: Annotated[float | None, typer.Option("--clean-weight", help="certified: weight of clean "
                                                       "cross-entropy mixed into the robust loss (paper: 0).")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="Real data only: resize to this many "
                                                   "pixels a side (default: the files' own size).")] = None,
    n_train: Annotated[int | None, typer.Option("--n-train", help="Train on the first N images only.")] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
    force: Annotated[bool, typer.Option("--force", help="Replace a finished model or a mismatched checkpoint.")
                     ] = False,
) -> None:
    """Train a classifier on generated or real images and save it (resumes an interrupted run in --out)."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import emit_json

    config = api.train_classifier(data, method, out, seed=seed, device=device, arch=arch, eps=eps, epochs=epochs,
                                  batch_size=batch_size, lr=lr, force=force, holdout=holdout, num_steps=num_steps,
                                  step_size=step_size, beta=beta, ramp=ramp, eps_start=eps_start, warmup=warmup,
                                  clip_norm=clip_norm, clean_weight=clean_weight, image_size=image_size,
                                  n_train=n_train)
    emit_json({"out": str(out), "method": config["method"], "arch": config["arch"], "final": config["final"]})
