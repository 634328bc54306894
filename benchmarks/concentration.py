"""Concentration from data on a real dataset: both methods at the published settings, timed at 1 and 2 threads.

Mahloujifar et al. (NeurIPS 2019, unions of L2 balls) report held-out adversarial risk on MNIST at alpha = 0.01
of 2.19% / 4.15% / 10.09% (eps 1.58 / 3.16 / 4.74) and on Fashion-MNIST at alpha = 0.05 of 7.77% / 16.23% / 20.10%.
This prints our held-out figures beside them, with the held-out risk (it should be about alpha), the wall time
per method and thread count, and the load average before and after each run (a busy machine is slower):

    IROB_DATA=/path/to/datasets python benchmarks/concentration.py --data mnist [--threads 1 2] [--n 70000]
        [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch

PUBLISHED = {  # (dataset, alpha) -> {eps: held-out adversarial risk}, Mahloujifar et al. 2019, L2 balls
    ("mnist", 0.01): {1.58: 0.0219, 3.16: 0.0415, 4.74: 0.1009},
    ("fashion-mnist", 0.05): {1.58: 0.0777, 3.16: 0.1623, 4.74: 0.2010},
}
EPS = (1.58, 3.16, 4.74)


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_once(points: torch.Tensor, method: str, alpha: list[float], threads: int, device: str) -> dict[str, Any]:
    from intrinsic_robustness.concentration import estimate_concentration

    torch.set_num_threads(threads)
    before = load_average()
    start = time.perf_counter()
    result = estimate_concentration(points, alpha, list(EPS), method, split_seed=0, device=device)
    seconds = time.perf_counter() - start
    return {"method": method, "threads": threads, "device": device, "seconds": seconds, "load_before": before,
            "load_after": load_average(), "rows": [_brief(r) for r in result.rows], "n_train": result.n_train,
            "n_test": result.n_test}


def _brief(row: Any) -> dict[str, Any]:
    keys = ("method", "alpha", "eps", "risk_train", "risk_test", "adv_risk_train", "adv_risk_test",
            "adv_risk_test_ci")
    out = {k: getattr(row, k) for k in keys}
    out["region"] = {k: v for k, v in row.region.items() if k in ("candidate", "k", "balls")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist")
    parser.add_argument("--alpha", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--n", type=int, default=None, help="use a seeded subsample of N images (default all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from intrinsic_robustness.concentration import load_sample

    points, info = load_sample(args.data)
    if args.n is not None and args.n < len(points):
        points = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(0))[: args.n]]
    runs = [run_once(points, m, args.alpha, t, args.device) for t in args.threads for m in ("halfspace", "balls")]
    report = {"data": args.data, "n": len(points), "runs": runs, "published": {f"{k[0]} alpha={k[1]}": v
                                                                                for k, v in PUBLISHED.items()},
              "cpu_count": os.cpu_count(), "torch": torch.__version__}
    for run in runs:
        print(f"{run['method']:9s} threads={run['threads']} {run['device']}: {run['seconds']:.1f} s "
              f"(load {run['load_before']} -> {run['load_after']})")
        for row in run["rows"] if run["threads"] == args.threads[0] else []:
            paper = PUBLISHED.get((args.data, row["alpha"]), {}).get(row["eps"])
            lo, hi = row["adv_risk_test_ci"]
            print(f"  alpha={row['alpha']:g} eps={row['eps']:g}: risk test {row['risk_test']:.4f}, adv risk test "
                  f"{row['adv_risk_test']:.4f} [{lo:.4f}, {hi:.4f}]" + (f" (published {paper:.4f})" if paper else "")
                  + f" {row['region']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
