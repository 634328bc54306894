"""``irob train-generator`` (ACGAN on real images) and ``irob generate`` (labelled synthetic datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from intrinsic_robustness.cli.app import DeviceOpt, SeedOpt, TrustOpt, app
from intrinsic_robustness.runtime import DEFAULT_DEVICE


@app.command("train-generator")
def train_generator(
    dataset: Annotated[str, typer.Option("--dataset", help="digits, fashion-mnist, mnist or idx:DIR.")],
    epochs: Annotated[int, typer.Option("--epochs", help="Total epochs; a rerun resumes after the last one done.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory (generator, checkpoints, sample grids).")],
    batch_size: Annotated[int, typer.Option("--batch-size", help="Minibatch size.")] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (betas 0.5, 0.999).")] = 2e-4,
    size: Annotated[int, typer.Option("--size", help="Image height and width (multiple of 4).")] = 28,
    latent_dim: Annotated[int, typer.Option("--latent-dim", help="Size of z.")] = 100,
    max_batches: Annotated[int | None, typer.Option("--max-batches", help="Cap on batches per epoch.")] = None,
    fidelity_epochs: Annotated[int, typer.Option("--fidelity-epochs",
                                                 help="Epochs of the reference classifier.")] = 2,
    width: Annotated[int, typer.Option("--width", help="Base channel width (64 in the paper).")] = 64,
    hidden: Annotated[int, typer.Option("--hidden", help="Fully connected width (1024 in the paper).")] = 1024,
    force: Annotated[bool, typer.Option("--force", help="Start over even if OUT holds a checkpoint.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Train the paper's ACGAN on real images; prints a JSON summary with the fidelity figure."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import emit_json

    summary = api.train_generator(dataset, out, epochs, seed=seed, device=device, batch_size=batch_size, lr=lr,
                                  latent_dim=latent_dim, size=size, max_batches=max_batches,
                                  fidelity_epochs=fidelity_epochs, force=force, width=width, hidden=hidden)
    fidelity = summary.get("fidelity", {})
    emit_json({"out": str(out), "epochs_done": summary["epochs_done"], "wall_seconds": summary["wall_seconds"],
               "generated_accuracy": fidelity.get("generated_accuracy"),
               "real_test_accuracy": fidelity.get("real_test_accuracy")})


@app.command("generate")
def generate(
    generator: Annotated[str, typer.Option("--generator", help="Directory saved by irob, module:factory, "
                                                               "affine or biggan128.")],
    n_train: Annotated[int, typer.Option("--n-train", help="Training examples.")],
    n_test: Annotated[int, typer.Option("--n-test", help="Test examples.")],
    out: Annotated[Path, typer.Option("--out", help="Output dataset directory.")],
    generator_weights: Annotated[str | None, typer.Option("--generator-weights",
                                                          help="Weights file (safetensors or torch).")] = None,
    priors: Annotated[str | None, typer.Option("--priors", help="Class priors, comma-separated "
                                                                "(default: balanced).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded per batch.")] = 500,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
    trust_code: TrustOpt = False,
) -> None:
    """Write train/test splits (images, labels, latents) plus a manifest; prints the class counts."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import emit_json
    from intrinsic_robustness.data.synthetic import parse_priors

    manifest = api.generate(generator, out, n_train, n_test, seed, weights=generator_weights,
                            priors=parse_priors(priors), batch_size=batch_size, device=device, overwrite=force,
                            trust_code=trust_code)
    emit_json({"out": str(out), **{s: manifest["splits"][s]["counts"] for s in manifest["splits"]}})
