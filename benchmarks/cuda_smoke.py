"""CUDA smoke test: every stage of the toolkit at tiny size on the GPU, one JSON line per stage.

    bash benchmarks/cuda_smoke.sh            # from the repository root, package installed, CUDA present

Runs the whole pipeline once (generator training, one short epoch on digits; Lipschitz by sampling, the
paper's sampling and gradient; dataset generation; standard, PGD, TRADES and certified training, one epoch
each; evaluation under both threat models, AutoAttack among the unconstrained attacks, certified radii for
the certified model; the report), then the commands ``irob lipschitz`` and ``irob evaluate`` with
``--device cuda`` in their own processes. Each line carries the stage's wall seconds and the peak GPU memory
it allocated (``torch.cuda.max_memory_allocated``, reset after every stage). Everything is written under
``${OUT:-/tmp}/cuda-smoke``. Exits non-zero, with the reason on stderr, when CUDA or a dependency is missing
or any stage fails or writes no result. ``--device cpu`` exists only to dry-run this script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CONFIG = """
[run]
name = "cuda-smoke"
seed = 0
device = "{device}"

[generator]
source = "train"
data = "digits"
image_size = 16
latent_dim = 32
epochs = 1
batch_size = 64
min_fidelity = 0.0
options = {{ width = 32, hidden = 256, fidelity_epochs = 1, fidelity_per_class = 20 }}

[lipschitz]
methods = ["sampling", "paper-sampling", "gradient", "certified-global", "certified-local"]
anchors_per_class = 4
radius = 2.0
neighbors = 200
options = {{ power_iters = 5, ascent_steps = 2, restarts = 1, anchors = 1, steps = 2, refine = 0 }}

[dataset]
n_train = 320
n_test = 48

[[classifiers]]
name = "standard"
method = "standard"
arch = "wk-small"
epochs = 1
batch_size = 32
options = {{ holdout = 32, eval_eps = 1.0, eval_steps = 2 }}

[[classifiers]]
name = "pgd"
method = "pgd"
arch = "wk-small"
eps = 1.0
epochs = 1
batch_size = 32
options = {{ num_steps = 3, step_size = 0.4, holdout = 32, eval_steps = 2 }}

[[classifiers]]
name = "trades"
method = "trades"
arch = "wk-small"
eps = 1.0
epochs = 1
batch_size = 32
options = {{ num_steps = 3, step_size = 0.4, holdout = 32, eval_steps = 2 }}

[[classifiers]]
name = "certified"
method = "certified"
arch = "wk-small"
eps = 1.0
epochs = 1
batch_size = 32
options = {{ holdout = 32, eval_steps = 2 }}

[evaluation]
threats = ["unconstrained", "in-distribution"]
eps = [0.5, 1.0, 2.0]
n = 32
batch_size = 16
attacks = {{ unconstrained = ["fmn", "pgd", "autoattack"], in-distribution = ["latent"] }}

[evaluation.attack_options]
fmn = {{ num_steps = 20 }}
pgd = {{ num_steps = 10, step_size = 0.25 }}
autoattack = {{ attacks = ["apgd-ce", "square"], square_queries = 50 }}
latent = {{ search_steps = 2, num_steps = 20 }}

[report]
samples_per_class = 2
adversarial_examples = 2
"""


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record), flush=True)


def fail(message: str) -> None:
    print(f"cuda_smoke: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check_environment(device: str) -> None:
    """CUDA present (unless a CPU dry run) and every optional dependency a stage needs importable."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        fail(f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
             "run this on a machine with an NVIDIA GPU and a CUDA build of torch")
    for module, need in (("intrinsic_robustness", "the package (pip install -e .)"),
                         ("sklearn", "scikit-learn (the digits data)"), ("pyautoattack", "AutoAttack"),
                         ("convex_adversarial", "certified training")):
        try:
            __import__(module)
        except ImportError as exc:
            fail(f"cannot import {module} ({exc}); install {need}")


def peak_mb(device: str) -> float | None:
    """Peak GPU memory since the last reset, in MiB, and reset (None on CPU)."""
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**20
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def run_pipeline(out: Path, device: str) -> Path:
    """The whole pipeline on the GPU; one line per stage as it finishes."""
    from intrinsic_robustness import api

    config = out / "smoke.toml"
    config.write_text(CONFIG.format(device=device))
    peak_mb(device)

    def on_event(outcome: Any) -> None:
        emit({"stage": outcome.name, "action": outcome.action, "seconds": round(outcome.seconds, 2),
              "peak_gpu_mb": peak_mb(device)})

    return api.run(config, out / "run", force=["all"], on_event=on_event)


def check_outputs(run: Path) -> None:
    """Every stage left its result, with finite numbers where numbers are expected."""
    for rel in ("generator/generator.json", "lipschitz/sampling.json", "lipschitz/paper-sampling.json",
                "lipschitz/gradient.json", "dataset/manifest.json", "report/report.html"):
        if not (run / rel).is_file():
            fail(f"{run / rel} was not written")
    for name in ("standard", "pgd", "trades", "certified"):
        for threat in ("unconstrained", "in-distribution"):
            path = run / "eval" / name / f"{threat}.json"
            if not path.is_file():
                fail(f"{path} was not written")
            result = json.loads(path.read_text())
            if not all(math.isfinite(v) for v in result["robust_accuracy"].values()):
                fail(f"{path}: non-finite robust accuracy {result['robust_accuracy']}")
        if name == "certified" and "certified_accuracy" not in json.loads(
                (run / "eval" / name / "unconstrained.json").read_text()):
            fail("the certified model's evaluation has no certified accuracy")


def run_commands(run: Path, out: Path, device: str) -> None:
    """``irob lipschitz`` and ``irob evaluate`` with --device in their own processes (CUDA start included)."""
    commands = {
        "cli lipschitz gradient": ["lipschitz", "--generator", str(run / "generator"), "--method", "gradient",
                                   "--anchors-per-class", "8", "--power-iters", "5", "--ascent-steps", "2",
                                   "--device", device, "--out", str(out / "cli-lipschitz.json")],
        "cli evaluate autoattack": ["evaluate", "--classifier", str(run / "classifiers" / "pgd"), "--data",
                                    str(run / "dataset"), "--threat", "unconstrained", "--attack", "autoattack",
                                    "--eps", "1.0", "--n", "32", "--batch-size", "32", "--device", device,
                                    "--out", str(out / "cli-evaluate.json")],
    }
    for name, args in commands.items():
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "intrinsic_robustness.cli", *args], capture_output=True,
                              text=True)
        if done.returncode != 0:
            fail(f"{name}: exit {done.returncode}: {done.stderr.strip()[-2000:]}")
        emit({"stage": name, "action": "ran", "seconds": round(time.perf_counter() - started, 2),
              "peak_gpu_mb": None, "note": "separate process (seconds include its start and CUDA init)"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT") or "/tmp", "cuda-smoke"))
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to dry-run the script")
    args = parser.parse_args()
    check_environment(args.device)
    import torch

    out = Path(args.out)
    for owned in ("run", "cli-lipschitz.json", "cli-evaluate.json", "cli-evaluate.safetensors", "smoke.toml"):
        target = out / owned
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    emit({"event": "start", "device": args.device, "gpu": gpu, "torch": torch.__version__,
          "cuda": torch.version.cuda, "out": str(out)})
    started = time.perf_counter()
    run = run_pipeline(out, args.device)
    check_outputs(run)
    run_commands(run, out, args.device)
    emit({"event": "done", "total_seconds": round(time.perf_counter() - started, 2), "run_dir": str(run)})


if __name__ == "__main__":
    main()
