"""Seconds per epoch of each training method on 10,000 generated 28x28 images (paper archs and settings).

Times a few batches of each method (after one warm-up batch) and extrapolates to a full epoch of
ceil(10000 / batch size) batches; prints each method's ratio to standard training measured in the same
process. Images come from the affine reference generator at 28x28 (content barely affects the cost).

    python benchmarks/training.py [--batches 4] [--n 10000] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch


def time_method(method: str, images: torch.Tensor, labels: torch.Tensor, batches: int, n: int) -> dict:
    from intrinsic_robustness.runtime import make_generator
    from intrinsic_robustness.training.loop import _build, _optimizer
    from intrinsic_robustness.training.objectives import METHODS, paper_recipe

    recipe = paper_recipe(method, tuple(images.shape[1:]))
    model = _build(recipe.arch, 10, tuple(images.shape[1:]), 0, torch.device("cpu"))
    opt = _optimizer(model, recipe)
    gen = make_generator(0)
    objective = METHODS.get(method)
    eps = recipe.eps  # certified: the final eps (the ramp's start is cheaper, the end is what dominates)
    model.train()
    times = []
    for b in range(batches + 1):
        idx = torch.arange(b * recipe.batch_size, (b + 1) * recipe.batch_size) % len(labels)
        t0 = time.perf_counter()
        loss = objective(model, images[idx], labels[idx], recipe, eps, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if b > 0:  # the first batch is a warm-up
            times.append(time.perf_counter() - t0)
    per_batch = sum(times) / len(times)
    n_batches = math.ceil(n / recipe.batch_size)
    return {"method": method, "arch": recipe.arch, "batch_size": recipe.batch_size, "eps": eps,
            "num_steps": recipe.num_steps, "seconds_per_batch": per_batch, "batches_timed": batches,
            "seconds_per_epoch": per_batch * n_batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    parser.add_argument("--methods", default="standard,pgd,trades,certified")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from intrinsic_robustness.generators import make_affine

    gen = make_affine(latent_dim=20, num_classes=10, height=28, width=28, scale=0.05, seed=0)
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(512) % 10
    with torch.no_grad():
        images = gen.decode(torch.randn(512, 20, generator=g), labels)
    rows = [time_method(m, images, labels, args.batches, args.n) for m in args.methods.split(",")]
    base = rows[0]["seconds_per_epoch"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; epoch = {args.n} images, "
          f"extrapolated from {args.batches} timed batches")
    for r in rows:
        print(f"{r['method']:>10} {r['arch']:>10} batch {r['batch_size']:>3}: {r['seconds_per_batch']:.3f} s/batch, "
              f"{r['seconds_per_epoch']:.0f} s/epoch, x{r['seconds_per_epoch'] / base:.1f} vs {rows[0]['method']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
