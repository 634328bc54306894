"""Per-unit costs at 1 and 2 torch threads, as ratios to a baseline timed in the same process.

Three families, each with its own baseline (the first row at 1 thread):
- Lipschitz, seconds per anchor on the paper's ACGAN (1x28x28, latent 100): sampling (baseline),
  paper-sampling, gradient;
- attacks, seconds per example on a SmallCNN over ACGAN images: fmn (baseline), pgd (one eps), the cheap
  cascade fmn+pgd over eps 1, 2, 3, latent;
- training, seconds per epoch of 2,000 images: standard (baseline), pgd, trades, certified (paper recipes,
  shortened inner attacks are NOT used: this is the recipe's own cost).

Absolute seconds are printed too, but only the ratios compare across machines. Run on an idle machine:

    python benchmarks/threads.py [--anchors 2] [--examples 8] [--images 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import torch


def seconds(fn: Callable[[], Any], threads: int, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` calls of ``fn`` with ``threads`` torch threads (one warm-up call first)."""
    torch.set_num_threads(threads)
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def acgan() -> torch.nn.Module:
    from intrinsic_robustness.generators.acgan import ACGANGenerator

    torch.manual_seed(0)
    gen = ACGANGenerator().train()
    with torch.no_grad():  # calibrate batch-norm statistics so outputs are not a constant grey image
        for _ in range(3):
            gen.decode(torch.randn(64, 100), torch.arange(64) % 10)
    return gen.eval().requires_grad_(False)


def lipschitz_rows(gen: torch.nn.Module, anchors: int) -> list[dict[str, Any]]:
    from intrinsic_robustness.lipschitz import estimate_lipschitz

    options = {"sampling": {"neighbors": 2000}, "paper-sampling": {"neighbors": 2000}, "gradient": {}}
    rows = []
    for method, opts in options.items():
        def run(method: str = method, opts: dict = opts) -> None:
            estimate_lipschitz(gen, method, anchors_per_class=anchors, classes=[0], device="cpu", **opts)
        rows += [{"family": "lipschitz (s/anchor)", "item": method, "threads": t,
                  "seconds": seconds(run, t) / anchors} for t in (1, 2)]
    return rows


def attack_rows(gen: torch.nn.Module, examples: int) -> list[dict[str, Any]]:
    import torch.nn.functional as F

    from intrinsic_robustness.attacks import build_attack
    from intrinsic_robustness.models.architectures import SmallCNN

    g = torch.Generator().manual_seed(0)
    z, y = torch.randn(examples + 512, 100, generator=g), torch.arange(examples + 512) % 10
    with torch.no_grad():
        x = gen.decode(z, y)
    torch.manual_seed(0)
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for idx in torch.randperm(512).split(64):  # one quick epoch so the model is not trivial
        opt.zero_grad()
        F.cross_entropy(model(x[examples:][idx]), y[examples:][idx]).backward()
        opt.step()
    model.eval()
    xs, ys, zs = x[:examples], y[:examples], z[:examples]
    attacks = {"fmn": (["fmn"], "unconstrained", ()), "pgd": (["pgd"], "unconstrained", (2.0,)),
               "fmn+pgd (eps 1,2,3)": (["fmn", "pgd"], "unconstrained", (1.0, 2.0, 3.0)),
               "latent": (["latent"], "in-distribution", ())}
    rows = []
    for name, (names, threat, eps) in attacks.items():
        attack = build_attack(names, threat, eps=eps, generator=gen if threat == "in-distribution" else None)

        def run(attack: Any = attack, eps: tuple = eps, threat: str = threat) -> None:
            kwargs = {"eps": eps[0]} if eps and len(eps) == 1 else {}
            attack(model, xs, ys, z=zs if threat == "in-distribution" else None, **kwargs)
        rows += [{"family": "attacks (s/example)", "item": name, "threads": t,
                  "seconds": seconds(run, t) / examples} for t in (1, 2)]
    return rows


def training_rows(gen: torch.nn.Module, images: int) -> list[dict[str, Any]]:
    import tempfile

    from intrinsic_robustness.data.synthetic import SyntheticDataset
    from intrinsic_robustness.training import fit

    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(images, 100, generator=g), torch.arange(images) % 10
    with torch.no_grad():
        data = SyntheticDataset(gen.decode(z, y), y, z)
    rows = []
    for method in ("standard", "pgd", "trades", "certified"):
        def run(method: str = method) -> None:
            with tempfile.TemporaryDirectory() as out:
                fit(data, method, epochs=1, holdout=0, seed=0, device="cpu", out=out)
        rows += [{"family": "training (s/epoch)", "item": method, "threads": t,
                  "seconds": seconds(run, t)} for t in (1, 2)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchors", type=int, default=2)
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--families", default="lipschitz,attacks,training")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    gen = acgan()
    chosen = args.families.split(",")
    rows = []
    rows += lipschitz_rows(gen, args.anchors) if "lipschitz" in chosen else []
    rows += attack_rows(gen, args.examples) if "attacks" in chosen else []
    rows += training_rows(gen, args.images) if "training" in chosen else []
    for family in dict.fromkeys(r["family"] for r in rows):
        mine = [r for r in rows if r["family"] == family]
        base = mine[0]["seconds"]
        print(f"\n{family}; baseline: {mine[0]['item']} at 1 thread = 1.00")
        print("| item | threads | seconds | ratio to baseline | 2 threads / 1 thread |\n|---|---:|---:|---:|---:|")
        for r in mine:
            r["ratio"] = r["seconds"] / base
            one = next(o for o in mine if o["item"] == r["item"] and o["threads"] == 1)["seconds"]
            print(f"| {r['item']} | {r['threads']} | {r['seconds']:.4g} | {r['ratio']:.3f} | "
                  f"{r['seconds'] / one:.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
