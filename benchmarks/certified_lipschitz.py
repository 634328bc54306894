"""Certified Lipschitz constants next to the gradient estimate: the price of certainty.

For each generator and class: the certified global constant, the certified local constant (anchored
quotient bound) at radii 0.05, 0.1, 0.2, 0.5 and at r_k = k / L_grad (k = 1, 2, 3: the radius the bound
needs for eps = k, with L_grad the class's p99 gradient estimate at radius 0.5), the gradient estimate on the
same anchors at the same radii, their ratio, seconds per anchor, and the intrinsic-robustness bound at eps
1, 2, 3 under each L. Prints one JSON object (also written to --out).

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/certified_lipschitz.py --generator demo \
        --generator /work/artifacts/mnist-acgan-3ep --anchors 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from intrinsic_robustness.bound import intrinsic_robustness
from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.generators.load import load_generator
from intrinsic_robustness.lipschitz import class_anchors, estimate_lipschitz
from intrinsic_robustness.lipschitz.certified import LocalSettings, certified_global, certified_local_curve

RADII = (0.05, 0.1, 0.2, 0.5)


def load(spec: str, device: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """``demo``: runs/demo/generator if present, else a seeded random demo-sized ACGAN; else a saved generator."""
    if spec == "demo":
        path = Path("runs/demo/generator")
        if (path / "generator.json").exists():
            return load_generator(str(path), device=device), {"source": str(path), "trained": True}
        torch.manual_seed(0)
        gen = ACGANGenerator(32, 10, (1, 16, 16), width=32, hidden=256)
        return gen.to(device), {"source": "random ACGANGenerator(32, 10, (1,16,16), width=32, hidden=256), seed 0",
                                "trained": False}
    info = json.loads((Path(spec) / "generator.json").read_text())
    return load_generator(spec, device=device), {"source": spec, "trained": True, "epochs": info.get("epochs")}


def gradient(gen: torch.nn.Module, label: int, n: int, radius: float, seed: int, device: str) -> list[float]:
    est = estimate_lipschitz(gen, method="gradient", anchors_per_class=n, radius=radius, seed=seed,
                             classes=[label], device=device)
    return list(est.per_class[0].values)


def one_class(gen: torch.nn.Module, label: int, args: argparse.Namespace, settings: LocalSettings) -> dict[str, Any]:
    many = gradient(gen, label, args.rate_anchors, 0.5, args.seed, args.device)
    l_grad = float(torch.quantile(torch.tensor(many, dtype=torch.float64), 0.99))
    need = [k / l_grad for k in (1, 2, 3)]
    radii = sorted(set(RADII) | set(need))
    anchors = class_anchors(gen, label, args.anchors, args.seed)
    grads = {r: gradient(gen, label, args.anchors, r, args.seed, args.device) for r in radii}
    started = time.perf_counter()
    cert = certified_local_curve(gen, anchors, label, radii, device=args.device, steps=args.steps,
                                 refine=args.refine, settings=settings)
    seconds = (time.perf_counter() - started) / args.anchors
    rows = []
    for j, r in enumerate(radii):
        c, g = cert[:, j].tolist(), grads[r]
        rows.append({"radius": r, "eps_needing_it": next((k for k, x in zip((1, 2, 3), need, strict=True)
                                                         if x == r), None),
                     "certified_local": c, "gradient": g, "ratio": [a / b for a, b in zip(c, g, strict=True)]})
    return {"class": label, "gradient_p99_radius_0.5": l_grad, "gradient_anchors_for_p99": args.rate_anchors,
            "radius_for_eps": dict(zip(("1", "2", "3"), need, strict=True)), "seconds_per_anchor": seconds,
            "rows": rows}


def bounds(per_class: list[dict[str, Any]], glob: list[float], risk: float) -> dict[str, Any]:
    """Bound at eps 1, 2, 3 with L = gradient p99, certified local (max over the anchors, at k / L_grad) and
    certified global. The local ones are per-anchor certificates on a handful of anchors, not a p99."""
    out: dict[str, Any] = {"risk": risk}
    for k in (1, 2, 3):
        grad = [c["gradient_p99_radius_0.5"] for c in per_class]
        local = [max(next(r for r in c["rows"] if r["eps_needing_it"] == k)["certified_local"]) for c in per_class]
        pairs = (("gradient", grad), ("certified_local", local), ("certified_global", glob))
        out[f"eps{k}"] = {name: float(intrinsic_robustness(risk, k, lips)) for name, lips in pairs}
    return out


def run(spec: str, args: argparse.Namespace) -> dict[str, Any]:
    gen, info = load(spec, args.device)
    classes = args.classes or list(range(int(gen.num_classes)))
    started = time.perf_counter()
    glob = certified_global(gen, classes=classes, device=args.device)
    info["certified_global_seconds"] = time.perf_counter() - started
    settings = LocalSettings()
    per_class = []
    deadline = started + args.budget
    for label in classes:
        if time.perf_counter() > deadline:
            info["stopped"] = f"time budget of {args.budget} s reached after {len(per_class)} classes"
            break
        per_class.append(one_class(gen, label, args, settings))
        per_class[-1]["certified_global"] = glob[classes.index(label)]
        if args.out:
            Path(args.out).write_text(json.dumps({"partial": spec, "per_class": per_class}, indent=1))
    result = {"generator": info, "classes": [c["class"] for c in per_class], "per_class": per_class,
              "summary": summary(per_class)}
    if len(per_class) == int(gen.num_classes):
        result["bound"] = bounds(per_class, glob, args.risk)
    return result


def summary(per_class: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and max ratio certified / gradient per radius (fixed radii) and per eps (radius k / L_grad)."""
    out: dict[str, Any] = {}
    keys = [(f"radius {r}", lambda row, r=r: row["radius"] == r) for r in RADII]
    keys += [(f"eps {k}", lambda row, k=k: row["eps_needing_it"] == k) for k in (1, 2, 3)]
    for name, match in keys:
        ratios = [x for c in per_class for row in c["rows"] if match(row) for x in row["ratio"]]
        if ratios:
            t = torch.tensor(ratios)
            out[name] = {"median_ratio": float(t.quantile(0.5)), "max_ratio": float(t.max()), "anchors": len(ratios)}
    out["seconds_per_anchor"] = [c["seconds_per_anchor"] for c in per_class]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", action="append", default=[], help="'demo' or a saved generator directory")
    parser.add_argument("--anchors", type=int, default=2, help="anchors per class for the certified values")
    parser.add_argument("--rate-anchors", type=int, default=100, help="anchors per class for the gradient p99")
    parser.add_argument("--classes", type=int, nargs="*", default=None)
    parser.add_argument("--steps", type=int, default=4, help="equally spaced radii in the quotient bound's sum")
    parser.add_argument("--refine", type=int, default=2, help="adaptively placed radii in the quotient bound's sum")
    parser.add_argument("--risk", type=float, default=0.05, help="risk level of the intrinsic-robustness bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None)
    parser.add_argument("--budget", type=float, default=float("inf"),
                        help="seconds per generator; stops between classes")
    args = parser.parse_args()
    machine = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device,
               "platform": platform.platform(), "load_before": os.getloadavg()}
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(0)
    results = [run(spec, args) for spec in (args.generator or ["demo"])]
    machine["load_after"] = os.getloadavg()
    report = {"machine": machine, "results": results}
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
