"""How much the demo's numbers move across seeds (and thread counts), so a newcomer can tell noise from a
broken install.

Runs ``irob demo`` once per seed (each in a fresh process, so torch's thread setting applies from the start)
and prints, per reported number, every seed's value, the spread (max - min) and the wall time of each run.

    python benchmarks/demo_spread.py --seeds 0 1 2 [--threads 2] [--out /tmp/demo-spread]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def run_demo(seed: int, threads: int, out: Path) -> tuple[dict[str, Any], float]:
    run_dir = out / f"seed-{seed}-threads-{threads}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    code = (f"import torch, sys; torch.set_num_threads({threads}); from intrinsic_robustness.cli import main; "
            f"sys.exit(main(['demo', '--seed', '{seed}', '--run-dir', '{run_dir}']))")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"demo seed {seed} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads((run_dir / "report" / "report.json").read_text()), seconds


def numbers(report: dict[str, Any]) -> dict[str, float]:
    """The figures the README's demo table quotes."""
    out = {"generator fidelity": report["generator"]["fidelity"]}
    for method, lip in report["lipschitz"].items():
        out[f"L {method} p99, class max"] = max(lip["lipschitz"])
    for c in report["classifiers"]:
        out[f"{c['name']}: natural accuracy"] = c["natural_accuracy"]
        for threat, table in c["robust_accuracy"].items():
            if "1" in table:
                out[f"{c['name']}: {threat} at eps 1"] = table["1"]
        if c.get("certified_accuracy") and "1" in c["certified_accuracy"]:
            out[f"{c['name']}: certified at eps 1"] = c["certified_accuracy"]["1"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="/tmp/demo-spread")
    args = parser.parse_args()
    out = Path(args.out)
    rows, times = {}, {}
    for seed in args.seeds:
        report, seconds = run_demo(seed, args.threads, out)
        rows[seed], times[seed] = numbers(report), seconds
    print(f"irob demo, {args.threads} thread(s); wall seconds per run: "
          + ", ".join(f"seed {s}: {t:.0f}" for s, t in times.items()))
    print("| number | " + " | ".join(f"seed {s}" for s in args.seeds) + " | spread (max - min) |")
    print("|---|" + "---:|" * (len(args.seeds) + 1))
    for key in rows[args.seeds[0]]:
        values = [rows[s].get(key) for s in args.seeds]
        shown = [f"{v:.3f}" if v is not None else "-" for v in values]
        known = [v for v in values if v is not None]
        spread = f"{max(known) - min(known):.3f}" if known else "-"
        print(f"| {key} | " + " | ".join(shown) + f" | {spread} |")
    (out / "spread.json").write_text(json.dumps({"threads": args.threads, "seconds": times, "numbers": rows},
                                                indent=2))


if __name__ == "__main__":
    main()
