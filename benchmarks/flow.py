"""Cost of the flow generator downstream, against the ACGAN in the same process: seconds per Lipschitz anchor
(gradient method, default options) and per latent-attack example (default options), at 1 and 2 torch threads.

Both generators are at MNIST size (1x28x28, 10 classes); the flow one has the default network (about 99k
parameters) and sampler (8 heun steps). Weights barely change the cost, so untrained networks are used unless
``--flow DIR`` / ``--acgan DIR`` name trained ones. The load average (``os.getloadavg``) is recorded before and
after every measurement: on a shared machine the figures move with it, the ratios much less.

    python benchmarks/flow.py [--anchors 4] [--examples 1] [--threads 1 2] [--attack-size 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (GB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def generators(flow_dir: str | None, acgan_dir: str | None) -> dict[str, nn.Module]:
    from intrinsic_robustness.generators.acgan import ACGANGenerator
    from intrinsic_robustness.generators.flow import FlowGenerator
    from intrinsic_robustness.generators.load import load_generator

    torch.manual_seed(0)
    flow = load_generator(flow_dir) if flow_dir else FlowGenerator(10, (1, 28, 28)).eval()
    acgan = load_generator(acgan_dir) if acgan_dir else ACGANGenerator(100, 10, (1, 28, 28)).eval()
    for gen in (flow, acgan):
        gen.requires_grad_(False)
    return {"acgan": acgan, "flow": flow}


def per_anchor(gen: nn.Module, anchors: int) -> float:
    """Seconds per anchor of the gradient estimator (10 Lanczos steps, 12 ascent steps x 3 starts)."""
    from intrinsic_robustness.lipschitz.gradient import gradient_values

    z = torch.randn(anchors, int(gen.latent_dim), generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    gradient_values(gen, z, 0, 0.5, 0, 1024, power_iters=10, ascent_steps=12, restarts=2)
    return (time.perf_counter() - start) / anchors


def per_example(gen: nn.Module, examples: int) -> float:
    """Seconds per example of the latent attack (default options) against a small seeded CNN."""
    from intrinsic_robustness.attacks.latent import LatentAttack
    from intrinsic_robustness.models.architectures import fidelity_cnn

    torch.manual_seed(2)
    model = fidelity_cnn(10, tuple(gen.image_shape)).eval()
    z = torch.randn(examples, int(gen.latent_dim), generator=torch.Generator().manual_seed(3))
    y = torch.stack([_correct_class(gen, model, zi) for zi in z])  # a misclassified point costs nothing
    with torch.no_grad():
        x = gen.decode(z, y)
    attack = LatentAttack(gen)
    start = time.perf_counter()
    attack(model, x, y, z=z)
    return (time.perf_counter() - start) / examples


@torch.no_grad()
def _correct_class(gen: nn.Module, model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """A class y whose image decode(z, y) the model assigns to y (the attack then has work to do)."""
    classes = torch.arange(int(gen.num_classes))
    pred = model(gen.decode(z.expand(len(classes), -1), classes)).argmax(1)
    hits = classes[pred == classes]
    if len(hits) == 0:
        raise SystemExit("the seeded CNN classifies no class of this latent correctly; change the seed")
    return hits[0]


def measure(gens: dict[str, nn.Module], threads: int, anchors: int, examples: int,
            attack_gens: dict[str, nn.Module]) -> dict:
    torch.set_num_threads(threads)
    row: dict = {"threads": threads}
    for what, fn, count, which in (("lipschitz_s_per_anchor", per_anchor, anchors, gens),
                                   ("latent_attack_s_per_example", per_example, examples, attack_gens)):
        for name, gen in which.items():
            load = os.getloadavg()[0]
            row[f"{name}_{what}"] = fn(gen, count)
            row[f"{name}_{what}_load"] = [load, os.getloadavg()[0]]
            print(json.dumps({"threads": threads, "family": name, "latent_dim": int(gen.latent_dim),
                              what: row[f"{name}_{what}"], "load_before_after": row[f"{name}_{what}_load"],
                              "peak_rss_gb": peak_rss_gb()}), flush=True)
        row[f"{what}_ratio_flow_to_acgan"] = row[f"flow_{what}"] / row[f"acgan_{what}"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=4)
    parser.add_argument("--examples", type=int, default=1)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--flow", default=None)
    parser.add_argument("--acgan", default=None)
    parser.add_argument("--attack-size", type=int, default=28,
                        help="image side of the flow generator the latent attack runs on (a smaller side "
                             "gives a quicker, cheaper figure: the attack's Jacobian metric differentiates all "
                             "C*H*W latent directions, in chunks of 32)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    gens = generators(args.flow, args.acgan)
    attack_gens = dict(gens)
    if args.attack_size != 28:
        from intrinsic_robustness.generators.flow import FlowGenerator

        torch.manual_seed(0)
        attack_gens["flow"] = FlowGenerator(10, (1, args.attack_size, args.attack_size)).eval().requires_grad_(False)
    params = {name: sum(p.numel() for p in gen.parameters()) for name, gen in gens.items()}
    rows = [measure(gens, t, args.anchors, args.examples, attack_gens) for t in args.threads]
    result = {"parameters": params, "flow_sampler": gens["flow"].config(), "cpus": os.cpu_count(),
              "anchors": args.anchors, "examples": args.examples, "attack_flow_size": args.attack_size,
              "rows": rows}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
