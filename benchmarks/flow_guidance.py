"""Classifier-free guidance on a trained flow generator: fidelity (label agreement, Frechet distance,
precision/recall) and the gradient Lipschitz estimate at each guidance scale, on the same latents.

Guidance changes only the sampler, so one trained generator (``--flow DIR``, trained with ``cond_drop`` > 0)
serves every scale. The reference classifier is trained once and shared, the samples use the same seed at every
scale, and the Lipschitz anchors are the same latents, so the rows differ only by the scale. Guidance doubles
the network evaluations per decode; the seconds are reported. Load (``os.getloadavg``) is recorded per row.

    IROB_DATA=/path/to/datasets python benchmarks/flow_guidance.py --flow RUN/generator \
        [--guidance 0 1 2] [--per-class 200] [--anchors 2] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch


def fidelity_row(gen: torch.nn.Module, model: torch.nn.Module, train: tuple, test: tuple, per_class: int,
                 seed: int) -> dict:
    """The fidelity report's numbers for the generator's current sampler, against a shared reference CNN."""
    from intrinsic_robustness.generators.fidelity import accuracy, distribution_fidelity, generated_samples

    start = time.perf_counter()
    images, labels = generated_samples(gen, per_class, seed)
    sampling = time.perf_counter() - start
    per = [accuracy(model, images[labels == c], labels[labels == c]) for c in range(int(gen.num_classes))]
    dist = distribution_fidelity(model, (images, labels), test, train, seed=seed)
    return {"label_fidelity": sum(per) / len(per), "label_fidelity_per_class": per,
            "frechet_distance": dist["frechet_distance"], "precision": dist["precision"],
            "recall": dist["recall"], "sampling_s": sampling}


def lipschitz_row(gen: torch.nn.Module, anchors: int, seed: int) -> dict:
    """Gradient-estimator local Lipschitz values (radius 0.5, default options) at fixed latents per class."""
    from intrinsic_robustness.lipschitz.gradient import gradient_values

    values, start = [], time.perf_counter()
    for k in range(int(gen.num_classes)):
        z = torch.randn(anchors, int(gen.latent_dim), generator=torch.Generator().manual_seed(seed + k))
        vals, _ = gradient_values(gen, z, k, 0.5, seed, 1024, power_iters=10, ascent_steps=12, restarts=2)
        values.append([float(v) for v in vals])
    flat = sorted(v for row in values for v in row)
    return {"lipschitz_per_class": values, "lipschitz_median": flat[len(flat) // 2], "lipschitz_max": flat[-1],
            "lipschitz_s_per_anchor": (time.perf_counter() - start) / len(flat)}


def main() -> None:
    from intrinsic_robustness.data.real import load_real
    from intrinsic_robustness.generators.fidelity import accuracy, train_reference_classifier
    from intrinsic_robustness.generators.load import load_generator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", required=True, help="a trained flow generator directory")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--per-class", type=int, default=200)
    parser.add_argument("--anchors", type=int, default=2, help="Lipschitz anchors per class (0: skip)")
    parser.add_argument("--fidelity-epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = load_generator(args.flow).eval().requires_grad_(False)
    train, test = load_real(args.dataset, "train", 28), load_real(args.dataset, "test", 28)
    model = train_reference_classifier(*train, num_classes=int(gen.num_classes), seed=args.seed,
                                       epochs=args.fidelity_epochs)
    result = {"generator": args.flow, "sampler": gen.config(), "threads": args.threads, "cpus": os.cpu_count(),
              "reference_real_test_accuracy": accuracy(model, *test), "rows": []}
    for scale in args.guidance:
        gen.guidance = float(scale)
        row = {"guidance": scale, "load_before": os.getloadavg()[0]}
        row.update(fidelity_row(gen, model, train, test, args.per_class, args.seed))
        if args.anchors:
            row.update(lipschitz_row(gen, args.anchors, args.seed))
        row["load_after"] = os.getloadavg()[0]
        result["rows"].append(row)
        print(json.dumps({k: v for k, v in row.items() if not k.endswith("per_class")}), flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
