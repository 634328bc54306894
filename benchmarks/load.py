"""Speed next to a busy process: one irob workload at 1 and 2 threads, with OpenMP threads sleeping (PASSIVE, irob's
default) or spinning (ACTIVE, torch's default wait), alone and beside a competing CPU-heavy process.

Workloads: ``evaluate`` (the default, about 10 s alone): a wk-small classifier trained once on sklearn digits,
then ``irob evaluate`` with PGD on its first ``--n`` test images, the stage that was 36x slower next to a busy
process; ``demo``: the whole ``irob demo`` (1.5 min alone on an idle 2-core machine).

Each measurement is a fresh ``irob`` process (the wait policy is read when OpenMP starts), timed by wall clock;
``uptime`` is recorded before and after every run, since other load on the machine changes every number. The
ratios that matter: busy / alone for each setting, and PASSIVE / ACTIVE alone (what sleeping costs when idle).

    python benchmarks/load.py [--workload evaluate|demo] [--threads 1 2] [--n 100] [--repeat 2] [--json out.json]

Settings are interleaved round by round and each keeps its fastest of ``--repeat`` runs, so a burst of other
load hits one run of each rather than all runs of one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

IROB = [sys.executable, "-m", "intrinsic_robustness.cli"]
COMPETITORS = {
    "python-loop": [sys.executable, "-c", "while True: pass"],  # one core, like a single-threaded job
    "torch-matmul": [sys.executable, "-c", "import torch\nx = torch.randn(800, 800)\nwhile True: x @ x"],
}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())


def prepare(work: Path, workload: str) -> list[str]:
    """The command to time (a classifier is trained first for ``evaluate``)."""
    if workload == "demo":
        return ["demo", "--run-dir", str(work / "demo"), "--device", "cpu"]
    clf = work / "clf"
    if not (clf / "model.safetensors").is_file():
        subprocess.run([*IROB, "train-classifier", "--data", "digits", "--method", "standard", "--arch", "wk-small",
                        "--epochs", "2", "--device", "cpu", "--out", str(clf)], check=True, capture_output=True)
    return ["evaluate", "--classifier", str(clf), "--data", "digits", "--threat", "unconstrained", "--attack", "pgd",
            "--eps", "1.0", "--n", "{n}", "--device", "cpu", "--out", "{out}"]


def one(command: list[str], threads: int, policy: str, competitor: str | None, work: Path, n: int) -> dict[str, Any]:
    """Wall seconds of one fresh ``irob`` process with this setting."""
    import shutil

    out = work / f"eval-{threads}-{policy}-{competitor}.json"
    for stale in (out, out.with_suffix(".safetensors"), work / "demo"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    args = [a.replace("{n}", str(n)).replace("{out}", str(out)) for a in command]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": policy, "IROB_PROGRESS_SECONDS": "600"}
    busy = subprocess.Popen(COMPETITORS[competitor], env={**os.environ, "OMP_NUM_THREADS": "2"}) if competitor \
        else None
    try:
        if busy is not None:
            time.sleep(2.0)  # let it reach full speed
        before = uptime()
        start = time.perf_counter()
        done = subprocess.run([*IROB, *args], env=env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - start
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    if done.returncode != 0:
        raise SystemExit(f"irob failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"threads": threads, "wait_policy": policy, "competitor": competitor or "none", "seconds": seconds,
            "uptime_before": before, "uptime_after": uptime()}


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """busy / alone per (threads, policy), and PASSIVE / ACTIVE alone per thread count."""
    alone = {(r["threads"], r["wait_policy"]): r["seconds"] for r in rows if r["competitor"] == "none"}
    out = [{"threads": r["threads"], "wait_policy": r["wait_policy"], "competitor": r["competitor"],
            "busy_over_alone": r["seconds"] / alone[(r["threads"], r["wait_policy"])]}
           for r in rows if r["competitor"] != "none" and (r["threads"], r["wait_policy"]) in alone]
    for t in sorted({r["threads"] for r in rows}):
        if (t, "PASSIVE") in alone and (t, "ACTIVE") in alone:
            out.append({"threads": t, "passive_over_active_alone": alone[(t, "PASSIVE")] / alone[(t, "ACTIVE")]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("evaluate", "demo"), default="evaluate")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--policies", nargs="+", default=["PASSIVE", "ACTIVE"])
    parser.add_argument("--competitor", choices=tuple(COMPETITORS), default="python-loop")
    parser.add_argument("--n", type=int, default=100, help="test images attacked (evaluate workload)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; each setting keeps its fastest run")
    parser.add_argument("--json", type=Path, help="write the rows and ratios here")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="irob-load-") as tmp:
        work = Path(tmp)
        command = prepare(work, opts.workload)
        settings = [(t, p, c) for t in opts.threads for p in opts.policies for c in (None, opts.competitor)]
        best: dict[tuple[Any, ...], dict[str, Any]] = {}
        runs = []
        for _ in range(opts.repeat):
            for threads, policy, competitor in settings:
                r = one(command, threads, policy, competitor, work, opts.n)
                runs.append(r)
                key = (threads, policy, competitor)
                if key not in best or r["seconds"] < best[key]["seconds"]:
                    best[key] = r
                print(f"{opts.workload:8s} threads={threads} {policy:7s} beside={r['competitor']:12s} "
                      f"{r['seconds']:7.1f} s   [{r['uptime_before'].split('load average: ')[-1]}]", flush=True)
        rows = [best[k] for k in settings]
    summary = ratios(rows)
    for r in summary:
        print(json.dumps(r))
    if opts.json:
        opts.json.write_text(json.dumps({"workload": opts.workload, "n": opts.n, "repeat": opts.repeat,
                                         "best": rows, "ratios": summary, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
