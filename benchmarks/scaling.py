"""Scaling check on ONE GPU: two torchrun ranks (both on cuda:0) against one process, same answers, timings.

    python benchmarks/scaling.py          # from the repository root, package installed, CUDA present

1. Prepares, in one process on the GPU: a small ACGAN (one short epoch on digits), a dataset from it and a
   standard classifier.
2. Probes NCCL with two ranks on the same GPU (an all-reduce of a CUDA tensor). NCCL normally refuses two
   ranks on one device ("Duplicate GPU detected"); then every two-rank run below uses
   ``IROB_DIST_BACKEND=gloo`` (gloo also carries CUDA tensors) and the output says which backend ran.
3. ``irob lipschitz`` (sampling, then gradient) and ``irob evaluate`` (fmn + pgd), each once in one process
   and once under ``torchrun --nproc-per-node 2``: the JSON numbers must be equal; prints both wall times and
   the ratio. Where they differ, a second single-process run decides: if it differs as well, the GPU's own
   run-to-run nondeterminism (backward passes) is reported with both gaps; if not, the check fails.
4. ``irob train-classifier`` (standard, data-parallel) under two ranks: this is the path that puts CUDA
   tensors through the backend; the weights must equal one process's up to float rounding.

One JSON line per step; files under ``${OUT:-/tmp}/scaling``. Exits non-zero with the reason when CUDA is
absent or any check fails. Wall times include each command's start (torch import, CUDA init, rendezvous).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROBE = """
import sys
import torch
import torch.distributed as dist
from intrinsic_robustness import distributed as d
d.init()
t = torch.full((4,), float(d.rank() + 1), device=d.rank_device(torch.device(sys.argv[1])))
d.all_reduce_sum_([t])
assert float(t[0]) == 3.0, float(t[0])
print("probe ok", dist.get_backend(), t.device, flush=True)
"""


DEVICE = "cuda"
# Wall clock, and the device name a Lipschitz file records ("cuda" for one process, "cuda:0" for rank 0).
IGNORED = ("seconds", "train_seconds", "device")
LAST: dict[str, str] = {}


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def fail(message: str) -> None:
    print(f"scaling: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def call(args: list[str], ranks: int, env: dict[str, str], cwd: Path, name: str, timeout: float = 540) -> float:
    """Run ``irob ARGS`` (or a script, ``x.py ARGS``) in one process or under torchrun; returns wall seconds.
    ``--device cuda`` in ARGS becomes the device this script was asked for (cpu only for a dry run)."""
    args = [DEVICE if a == "cuda" else a for a in args]
    head = [sys.executable] if ranks == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                 "--nproc-per-node", str(ranks)]
    program = args if args[0].endswith(".py") else ["-m", "intrinsic_robustness.cli", *args]
    started = time.perf_counter()
    try:
        done = subprocess.run([*head, *program], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} ({ranks} rank(s)) did not finish in {timeout:.0f} s") from None
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{name} ({ranks} rank(s)) exit {done.returncode}: {done.stderr.strip()[-3000:]}")
    LAST["stdout"] = done.stdout
    return seconds


def backend_name(env: dict[str, str]) -> str:
    return env.get("IROB_DIST_BACKEND") or ("cpu:gloo,cuda:nccl" if DEVICE == "cuda" else "gloo")


def numbers(path: Path) -> Any:
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in IGNORED}
        return [strip(v) for v in node] if isinstance(node, list) else node

    return strip(json.loads(path.read_text()))


def prepare(out: Path, env: dict[str, str]) -> None:
    """Generator, dataset and classifier for the checks (one process on the GPU)."""
    steps = {
        "train-generator": ["train-generator", "--dataset", "digits", "--epochs", "1", "--size", "16",
                            "--latent-dim", "32", "--width", "32", "--hidden", "256", "--max-batches", "20",
                            "--fidelity-epochs", "1", "--device", "cuda", "--out", "gen"],
        "generate": ["generate", "--generator", "gen", "--n-train", "512", "--n-test", "256", "--batch-size", "64",
                     "--device", "cuda", "--out", "data"],
        "train-classifier": ["train-classifier", "--data", "data", "--method", "standard", "--arch", "wk-small",
                             "--epochs", "1", "--batch-size", "64", "--holdout", "32", "--device", "cuda",
                             "--out", "clf"],
    }
    for name, args in steps.items():
        emit({"step": f"prepare {name}", "seconds": round(call(args, 1, env, out, name), 2)})


def probe_backend(out: Path, env: dict[str, str]) -> dict[str, str]:
    """NCCL with two ranks on one GPU if it works there, else gloo carrying the CUDA tensors."""
    probe = out / "probe.py"
    probe.write_text(PROBE)
    try:
        call([str(probe), "cuda"], 2, {**env, "IROB_DIST_TIMEOUT": "60"}, out, "nccl probe", timeout=150)
        emit({"step": "nccl probe (2 ranks, one GPU)", "result": "ok", "said": LAST["stdout"].strip()[-300:]})
        return env
    except RuntimeError as exc:
        reason = str(exc).splitlines()[-1][:400] if str(exc).strip() else "no message"
        emit({"step": "nccl probe (2 ranks, one GPU)", "result": "refused; falling back to gloo on CUDA tensors",
              "reason": reason})
    gloo = {**env, "IROB_DIST_BACKEND": "gloo"}
    call([str(probe), "cuda"], 2, gloo, out, "gloo probe")
    emit({"step": "gloo probe (2 ranks, CUDA tensors)", "result": "ok", "said": LAST["stdout"].strip()[-300:]})
    return gloo


def largest_gap(a: Any, b: Any) -> float:
    """Largest absolute difference between the numbers of two JSON trees of one shape (inf if shapes differ)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return max((largest_gap(a[k], b[k]) for k in a), default=0.0) if a.keys() == b.keys() else float("inf")
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return float("inf")
        return max((largest_gap(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) if a != b else 0.0
    return 0.0 if a == b else float("inf")


def compare(name: str, args: list[str], result: str, out: Path, env: dict[str, str],
            dist_env: dict[str, str]) -> None:
    """One process against two ranks. If they differ, a second single-process run tells GPU nondeterminism
    (cuDNN/atomics in backward passes, which differ run to run) from a sharding fault (single runs agree)."""
    one = call([*args, "--out", f"{result}-1.json"], 1, env, out, name)
    two = call([*args, "--out", f"{result}-2.json"], 2, dist_env, out, name)
    a, b = numbers(out / f"{result}-1.json"), numbers(out / f"{result}-2.json")
    record = {"step": name, "one_rank_s": round(one, 2), "two_ranks_s": round(two, 2),
              "ratio_two_over_one": round(two / one, 3), "equal": a == b,
              "backend": backend_name(dist_env)}
    if a != b:
        call([*args, "--out", f"{result}-1b.json"], 1, env, out, name)
        again = numbers(out / f"{result}-1b.json")
        record.update(gap_two_ranks=largest_gap(a, b), gap_single_rerun=largest_gap(a, again))
        if again == a:
            emit(record)
            fail(f"{name}: single-process reruns agree but two ranks differ ({result}-1.json vs {result}-2.json)")
        record["note"] = "single-process reruns differ too: GPU nondeterminism, not the sharding"
    emit(record)


def check_training(out: Path, env: dict[str, str], dist_env: dict[str, str]) -> None:
    import torch
    from safetensors.torch import load_file

    args = ["train-classifier", "--data", "data", "--method", "standard", "--arch", "wk-small", "--epochs", "2",
            "--batch-size", "64", "--holdout", "32", "--device", "cuda", "--seed", "3"]
    one = call([*args, "--out", "dp-1"], 1, env, out, "train 1 rank")
    two = call([*args, "--out", "dp-2"], 2, dist_env, out, "train 2 ranks")
    w1, w2 = load_file(str(out / "dp-1" / "model.safetensors")), load_file(str(out / "dp-2" / "model.safetensors"))
    worst = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    emit({"step": "data-parallel training (standard, 2 epochs)", "one_rank_s": round(one, 2),
          "two_ranks_s": round(two, 2), "max_weight_difference": worst,
          "backend": backend_name(dist_env),
          "note": "wk-small has no dropout: two ranks should match one up to float rounding"})
    if not all(torch.isfinite(w).all() for w in w2.values()) or not worst < 1e-3:
        fail(f"data-parallel training: weights differ from one process by {worst:g} (expected rounding only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT") or "/tmp", "scaling"))
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to dry-run the script")
    parser.add_argument("--quick", action="store_true", help="only the backend probe and one sharded Lipschitz "
                        "run on the affine reference (about a minute: for a short GPU lease)")
    args = parser.parse_args()
    import torch

    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        fail(f"CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda}); run this on a "
             "machine with an NVIDIA GPU")
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.setdefault("OMP_NUM_THREADS", "4")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    nccl = str(torch.cuda.nccl.version()) if torch.cuda.is_available() else None
    emit({"step": "start", "device": DEVICE, "gpu": gpu, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
          "cuda": torch.version.cuda, "nccl": nccl})
    try:
        if args.quick:
            dist_env = probe_backend(out, env)
            compare("irob lipschitz (gradient, affine)", ["lipschitz", "--generator", "affine", "--method", "gradient",
                                                          "--anchors-per-class", "64", "--device", "cuda"],
                    "lipschitz-affine", out, env, dist_env)
            emit({"step": "done", "out": str(out)})
            return
        prepare(out, env)
        dist_env = probe_backend(out, env)
        for method in ("sampling", "gradient"):
            compare(f"irob lipschitz ({method})", ["lipschitz", "--generator", "gen", "--method", method,
                                                   "--anchors-per-class", "64", "--batch-size", "512",
                                                   *(["--neighbors", "200"] if method == "sampling" else []),
                                                   "--device", "cuda"], f"lipschitz-{method}", out, env, dist_env)
        compare("irob evaluate (fmn+pgd)", ["evaluate", "--classifier", "clf", "--data", "data", "--threat",
                                            "unconstrained", "--attack", "fmn,pgd", "--batch-size", "32",
                                            "--device", "cuda"], "evaluate", out, env, dist_env)
        check_training(out, env, dist_env)
    except RuntimeError as exc:
        fail(str(exc))
    emit({"step": "done", "out": str(out)})


if __name__ == "__main__":
    main()
