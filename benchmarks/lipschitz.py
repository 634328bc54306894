"""Benchmark: the paper's sampling estimator against the gradient estimator on the paper's ACGAN.

Same anchors for both methods (same seed). Prints per-class estimates, generator evaluations, wall time, and
the ratios the issue targets: gradient >= sampling on every anchor with <= 1/20 of the evaluations.

    nice -n 10 python benchmarks/lipschitz.py --anchors-per-class 5 [--weights runs/fashion-acgan]

Trained weights are used when ``--weights`` (an irob generator directory, or a run directory holding
``generator/``) loads with ``load_generator``; otherwise a seeded random ACGAN whose batch-norm statistics
are calibrated on a few train-mode batches (with the default N(0, 1) statistics a random net's output is
a near-constant grey image, a degenerate test).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.lipschitz import estimate_lipschitz
from intrinsic_robustness.runtime import derive_seed, make_generator

DEFAULT_WEIGHTS = "/work/main/runs/fashion-acgan"


def load_acgan(weights: str | None, seed: int) -> tuple[torch.nn.Module, str]:
    """Trained ACGAN from ``weights`` if it loads, else a seeded random one; returns it and a description."""
    if weights:
        from intrinsic_robustness.errors import UserInputError
        from intrinsic_robustness.generators.load import load_generator

        for candidate in (Path(weights), Path(weights) / "generator"):
            if (candidate / "generator.json").is_file():
                info = json.loads((candidate / "generator.json").read_text())
                try:
                    gen = load_generator(str(candidate), None, "cpu")
                except UserInputError as exc:
                    print(f"could not load {candidate}: {exc}")
                    continue
                return gen, (f"trained weights from {candidate} ({info.get('trained_on', '?')}, "
                             f"{info.get('epochs', '?')} epoch(s))")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        gen = ACGANGenerator(latent_dim=100, num_classes=10, image_shape=(1, 28, 28))
    rng = make_generator(derive_seed(seed, "bn-calibration"))
    gen.train()
    with torch.no_grad():
        for _ in range(4):
            z = gen.sample_latent(256, generator=rng)
            y = torch.randint(0, 10, (256,), generator=rng)
            gen.decode(z, y)
    return gen.eval(), f"seeded random weights (seed {seed}, batch-norm statistics from 1024 latents)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors-per-class", type=int, default=5)
    parser.add_argument("--classes", type=int, nargs="*", default=None)
    parser.add_argument("--radius", type=float, default=0.5)
    parser.add_argument("--neighbors", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--out", default=None, help="optional JSON with both results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen, source = load_acgan(args.weights, args.seed)
    for p in gen.parameters():
        p.requires_grad_(False)
    common = {"anchors_per_class": args.anchors_per_class, "radius": args.radius, "seed": args.seed,
              "classes": args.classes, "device": "cpu"}
    warm = {**common, "anchors_per_class": 1, "classes": [0], "seed": args.seed + 1}
    estimate_lipschitz(gen, "sampling", neighbors=8, **warm)  # one-time costs (torch.func set-up) untimed
    estimate_lipschitz(gen, "gradient", **warm)
    started = time.perf_counter()
    samp = estimate_lipschitz(gen, "sampling", neighbors=args.neighbors, **common)
    grad = estimate_lipschitz(gen, "gradient", **common)
    report(samp, grad, source, args, time.perf_counter() - started)
    if args.out:
        from intrinsic_robustness.storage import write_json

        write_json(args.out, {"source": source, "sampling": samp.to_dict(), "gradient": grad.to_dict()})


def report(samp, grad, source: str, args: argparse.Namespace, total: float) -> None:  # noqa: ANN001
    """Markdown table per class, then the ratios."""
    print(f"ACGAN (1x28x28, latent 100): {source}; radius {args.radius}, {args.anchors_per_class} anchors "
          f"per class, seed {args.seed}, {torch.get_num_threads()} thread(s)")
    par = grad.parameters
    print(f"sampling: {args.neighbors} neighbours per anchor; gradient: {par['power_iters']} Lanczos steps, "
          f"{par['ascent_steps']} ascent steps x {1 + par['restarts']} starts\n")
    print("| class | sampling p99 | sampling max | gradient p99 | gradient max | min per-anchor ratio |")
    print("|---:|---:|---:|---:|---:|---:|")
    wins = total_anchors = 0
    ratios = []
    for s, g in zip(samp.per_class, grad.per_class, strict=True):
        sv, gv = torch.tensor(s.values), torch.tensor(g.values)
        wins += int((gv >= sv).sum())
        total_anchors += len(sv)
        ratio = gv / sv
        ratios.append(ratio)
        print(f"| {s.label} | {s.p99:.4g} | {s.max:.4g} | {g.p99:.4g} | {g.max:.4g} | {ratio.min():.3f} |")
    all_ratios = torch.cat(ratios)
    print(f"\n| method | generator evaluations | wall time (s) |\n|---|---:|---:|\n"
          f"| sampling | {samp.generator_evaluations:,} | {samp.seconds:.1f} |\n"
          f"| gradient | {grad.generator_evaluations:,} | {grad.seconds:.1f} |\n")
    evals_ratio = grad.generator_evaluations / samp.generator_evaluations
    print(f"- evaluations ratio gradient/sampling: {evals_ratio:.4f} (1/{1 / evals_ratio:.1f})")
    print(f"- time ratio gradient/sampling: {grad.seconds / samp.seconds:.3f}")
    print(f"- anchors where gradient >= sampling: {wins}/{total_anchors} ({wins / total_anchors:.3f})")
    print(f"- per-anchor gradient/sampling ratio: min {all_ratios.min():.3f}, "
          f"median {all_ratios.median():.3f}, max {all_ratios.max():.3f}")
    print(f"- total wall time {total:.1f} s")
    print(json.dumps({"evals_ratio": evals_ratio,
                      "time_ratio": grad.seconds / samp.seconds, "fraction_gradient_ge_sampling":
                      wins / total_anchors}))


if __name__ == "__main__":
    main()
