"""``irob train-generator`` (ACGAN or flow on real images) and ``irob generate`` (labelled synthetic datasets)."""

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
    family: Annotated[str, typer.Option("--family", help="acgan (the paper's) or flow (flow matching).")] = "acgan",
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Minibatch size (acgan 64, flow 128).")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Adam learning rate (acgan 2e-4, flow 1e-3).")] = None,
    size: Annotated[int, typer.Option("--size", help="Image height and width (multiple of 4).")] = 28,
    latent_dim: Annotated[int | None, typer.Option("--latent-dim", help="acgan: size of z (100).")] = None,
    max_batches: Annotated[int | None, typer.Option("--max-batches", help="Cap on batches per epoch.")] = None,
    fidelity_epochs: Annotated[int, typer.Option("--fidelity-epochs",
                                                 help="Epochs of the reference classifier.")] = 2,
    width: Annotated[int | None, typer.Option("--width", help="Base channel width (acgan 64, flow 12).")] = None,
    hidden: Annotated[int | None, typer.Option("--hidden", help="acgan: fully connected width (1024).")] = None,
    levels: Annotated[int | None, typer.Option("--levels", help="flow: downsamplings of the U-Net (2).")] = None,
    emb_dim: Annotated[int | None, typer.Option("--emb-dim", help="flow: time/class embedding size (32).")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="flow: ODE steps of decode (8).")] = None,
    solver: Annotated[str | None, typer.Option("--solver", help="flow: euler, midpoint or heun (heun).")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", help="flow: classifier-free guidance scale "
                                                                      "stored with the weights (0).")] = None,
    cond_drop: Annotated[float | None, typer.Option("--cond-drop", help="flow: share of labels dropped in "
                                                                        "training (0.1).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Start over even if OUT holds a checkpoint.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Train a generator (the paper's ACGAN, or a flow-matching model) on real images; prints a JSON summary."""
    from intrinsic_robustness import api
    from intrinsic_robustness.cli.console import emit_json

    given = {"batch_size": batch_size, "lr": lr, "latent_dim": latent_dim, "width": width, "hidden": hidden,
             "levels": levels, "emb_dim": emb_dim, "steps": steps, "solver": solver, "guidance": guidance,
             "cond_drop": cond_drop}
    options = {k: v for k, v in given.items() if v is not None}
    summary = api.train_generator(dataset, out, epochs, seed=seed, device=device, family=family, size=size,
                                  max_batches=max_batches, fidelity_epochs=fidelity_epochs, force=force, **options)
    fidelity = summary.get("fidelity", {})
    emit_json({"out": str(out), "family": family, "epochs_done": summary["epochs_done"],
               "wall_seconds": summary["wall_seconds"],
               "generated_accuracy": fidelity.get("generated_accuracy"),
               "real_test_accuracy": fidelity.get("real_test_accuracy"),
               **{k: fidelity.get(k) for k in ("label_fidelity", "frechet_distance", "precision", "recall")}})


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
