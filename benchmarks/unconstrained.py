"""Cheap unconstrained attacks (fmn, pgd, their cascade) against official AutoAttack on real-MNIST models.

Trains two classifiers on real MNIST (cached in ``--cache``, so reruns skip training): ``standard`` (wk-small,
4 epochs of Adam on all 60,000 training images) and ``pgd`` (the paper's SmallCNN, PGD training at eps 3.0
with 10 steps of 0.75 for 4 epochs on the first 15,000 training images; the paper uses 40 steps of 0.5 and
100 epochs). Then, on slices of the real test set and at each eps, it reports the robust accuracy of
official AutoAttack (standard L2, run on each example alone: the wrapper seeds every example from its own
generator), fmn alone, pgd alone, and the cheap cascade (fmn then pgd, through
``build_attack(["fmn", "pgd"], ...)``), for the current defaults and for the defaults before issue 14.
The full cascade (fmn, pgd, autoattack; the default ensemble on CUDA) is priced from the per-example
AutoAttack runs: its AutoAttack member sees exactly the examples the cheap cascade leaves robust, with the
same per-example seeds. ``--run-full-cascade standard/0:100`` also runs it for real there, as a check.
Times are CPU seconds per example (``time.process_time`` of this one process, robust to other jobs on a
shared machine), each also as a ratio to AutoAttack's time measured in the same process.

    IROB_DATA=/work/shared/datasets OMP_NUM_THREADS=1 nice -n 10 python benchmarks/unconstrained.py \
        --slices 0:100,100:200 --run-full-cascade standard/0:100 --out /work/artifacts/unconstrained/result.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from intrinsic_robustness.attacks import PGD, AutoAttackL2, MinimalNorm, build_attack

CACHE = Path("/work/artifacts/unconstrained")
# The defaults of fmn and pgd before the change measured here (issue 14), for a before/after comparison.
PREVIOUS_FMN = {"num_steps": 100, "step_size": 1.0, "gamma": 0.05, "num_targets": 3, "target_order": "logits",
                "untargeted": True}
PREVIOUS_PGD = {"schedule": "constant", "patience": 0}
MODELS = {
    "standard": {"method": "standard", "arch": "wk-small", "epochs": 4, "n_train": 60000},
    "pgd": {"method": "pgd", "arch": "small-cnn", "epochs": 4, "n_train": 15000, "eps": 3.0,
            "num_steps": 10, "step_size": 0.75},
}


def train_or_load(name: str, cache: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The cached classifier ``name`` (trained here with ``fit`` on real MNIST the first time)."""
    from intrinsic_robustness.data.real import load_real
    from intrinsic_robustness.models.load import load_classifier
    from intrinsic_robustness.training import fit

    spec = dict(MODELS[name])
    out = cache / name
    if not (out / "config.json").is_file():
        x, y = load_real("mnist", "train", 28)
        n = spec.pop("n_train")
        data = SimpleNamespace(images=x[:n], labels=y[:n], num_classes=10)
        fit(data, spec.pop("method"), out=out, seed=0, **spec)
    config = json.loads((out / "config.json").read_text())
    info = {"recipe": config["recipe"], "n_train": config["n_train"], "final": config["final"],
            "train_wall_seconds": config["train_seconds"]}
    return load_classifier(out), info


def timed(fn: Any) -> tuple[Any, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def clean_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def autoattack_per_example(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                           eps: float, seed: int) -> dict[str, torch.Tensor]:
    """AutoAttack on each example alone: its robust flag, norm and CPU seconds (the wrapper seeds every example
    from its own generator, so this equals one batched call, and the per-example times price the cascade)."""
    robust, norms, seconds = [], [], []
    attack = AutoAttackL2()
    for i in range(len(x)):
        res, t = timed(lambda i=i: attack(model, x[i:i + 1], y[i:i + 1], eps=eps, seed=seed, index=index[i:i + 1]))
        robust.append(bool(res.robust(eps)[0]))
        norms.append(float(res.norms[0]))
        seconds.append(t)
    return {"robust": torch.tensor(robust), "norms": torch.tensor(norms), "seconds": torch.tensor(seconds)}


def cheap_members(previous: bool) -> dict[str, dict[str, Any]]:
    """Attack options: the new defaults (empty) or the defaults before this change."""
    return {"fmn": dict(PREVIOUS_FMN), "pgd": dict(PREVIOUS_PGD)} if previous else {"fmn": {}, "pgd": {}}


def run_cheap(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, grid: list[float],
              seed: int, previous: bool) -> dict[str, Any]:
    """fmn alone, pgd alone at each eps, and the cascade fmn -> pgd built by ``build_attack``."""
    opts = cheap_members(previous)
    fmn, t_fmn = timed(lambda: MinimalNorm(**opts["fmn"])(model, x, y, seed=seed, index=index))
    pgd = {e: timed(lambda e=e: PGD(**opts["pgd"])(model, x, y, eps=e, seed=seed, index=index)) for e in grid}
    attack = build_attack(["fmn", "pgd"], "unconstrained", eps=grid, options=opts)
    cascade, t_cascade = timed(lambda: attack(model, x, y, seed=seed, index=index))
    return {"fmn": fmn, "pgd": {e: r for e, (r, _) in pgd.items()}, "cascade": cascade, "counts": attack.last_counts,
            "seconds": {"fmn": t_fmn, "pgd (all eps)": sum(t for _, t in pgd.values()), "cheap cascade": t_cascade}}


def cached_autoattack(path: Path, n: int, grid: list[float]) -> dict[float, dict[str, torch.Tensor]] | None:
    """AutoAttack results saved from one batched call per eps ({eps: {robust, norms, cpu}}, seed 0); per-example
    seconds are then the batch's mean, so the full cascade priced from them is a lower estimate."""
    saved = torch.load(path, weights_only=True)
    if any(e not in saved for e in grid):
        return None
    return {e: {"robust": saved[e]["robust"], "norms": saved[e]["norms"],
                "seconds": torch.full((n,), float(saved[e]["cpu"]) / n)} for e in grid}


def compare(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
            grid: list[float], seed: int, run_full: bool,
            aa_cache: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Robust accuracies and CPU seconds per example of every attack on one slice (+ per-example arrays)."""
    n = len(x)
    cached = cached_autoattack(aa_cache, n, grid) if aa_cache is not None and aa_cache.is_file() else None
    aa = cached or {e: autoattack_per_example(model, x, y, index, e, seed) for e in grid}
    t_aa = sum(float(a["seconds"].sum()) for a in aa.values())
    new, old = run_cheap(model, x, y, index, grid, seed, False), run_cheap(model, x, y, index, grid, seed, True)
    out: dict[str, Any] = {"n": n, "clean_accuracy": clean_accuracy(model, x, y), "robust_accuracy": {},
                           "cpu_s_per_example": {"autoattack (all eps)": t_aa / n},
                           "cheap_cascade_counts": new["counts"]}
    for label, res in (("", new), ("previous defaults: ", old)):
        for k, v in res["seconds"].items():
            out["cpu_s_per_example"][label + k] = v / n
    for e in grid:
        row = {"autoattack": float((aa[e]["robust"]).double().mean())}
        for label, res in (("", new), ("previous defaults: ", old)):
            cheap = res["cascade"].robust(e)
            row.update({label + "fmn": res["fmn"].robust_accuracy(e), label + "pgd": res["pgd"][e].robust_accuracy(e),
                        label + "cheap cascade": res["cascade"].robust_accuracy(e),
                        label + "only autoattack breaks": int((cheap & ~aa[e]["robust"]).sum()),
                        label + "only cheap cascade breaks": int((~cheap & aa[e]["robust"]).sum())})
        out["robust_accuracy"][f"{e:g}"] = row
    out["full_cascade"] = full_cascade(new, aa, grid, n)
    if cached:
        out["autoattack_source"] = f"cached batched runs in {aa_cache} (seconds: the batch mean per example)"
        out["full_cascade"]["how"] = "priced at the cached batch's mean AutoAttack seconds per example"
    if run_full:
        out["full_cascade"]["run"] = run_full_cascade(model, x, y, index, grid, seed)
    ratios = {k: v / out["cpu_s_per_example"]["autoattack (all eps)"] for k, v in out["cpu_s_per_example"].items()}
    ratios["full cascade (fmn, pgd, autoattack)"] = out["full_cascade"]["cpu_s_per_example"] / (t_aa / n)
    out["time_ratio_vs_autoattack"] = ratios
    arrays = {"autoattack": aa, "fmn_norms": new["fmn"].norms, "cascade_norms": new["cascade"].norms,
              "previous_fmn_norms": old["fmn"].norms, "previous_cascade_norms": old["cascade"].norms}
    return out, arrays


def full_cascade(cheap: dict[str, Any], aa: dict[float, dict[str, torch.Tensor]], grid: list[float],
                 n: int) -> dict[str, Any]:
    """The full ensemble (fmn, pgd, autoattack; the CUDA default) priced from the per-example runs: its
    AutoAttack member sees exactly the examples the cheap cascade leaves robust at each eps and, being seeded
    per example, gives them the answers and costs measured alone."""
    rob = {e: cheap["cascade"].robust(e) for e in grid}
    seconds = cheap["seconds"]["cheap cascade"] + sum(float(aa[e]["seconds"][rob[e]].sum()) for e in grid)
    return {"robust_accuracy": {f"{e:g}": float((rob[e] & aa[e]["robust"]).double().mean()) for e in grid},
            "examples_autoattack_adds": {f"{e:g}": int((rob[e] & ~aa[e]["robust"]).sum()) for e in grid},
            "autoattack_runs": {f"{e:g}": int(rob[e].sum()) for e in grid}, "cpu_s_per_example": seconds / n,
            "how": "derived from the per-example AutoAttack runs"}


def run_full_cascade(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor,
                     grid: list[float], seed: int) -> dict[str, Any]:
    """The full ensemble actually run (checks the derived numbers)."""
    attack = build_attack(["fmn", "pgd", "autoattack"], "unconstrained", eps=grid)
    res, t = timed(lambda: attack(model, x, y, seed=seed, index=index))
    return {"robust_accuracy": {f"{e:g}": res.robust_accuracy(e) for e in grid}, "counts": dict(attack.last_counts),
            "cpu_s_per_example": t / len(x)}


def parse_slices(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in (part.split(":") for part in text.split(","))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="standard,pgd")
    parser.add_argument("--slices", default="0:100", help="comma list of start:stop test-image ranges")
    parser.add_argument("--eps", default="1,2,3")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-full-cascade", default="", help="comma list of MODEL/START:STOP on which to also "
                        "run fmn,pgd,autoattack for real (checks the numbers derived from per-example AutoAttack)")
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--autoattack-cache", default="", help="folder of saved batched AutoAttack results "
                        "aa_MODEL_START_STOP.pt ({eps: {robust, norms, cpu}}, seed 0) to reuse instead of rerunning")
    parser.add_argument("--cache", default=str(CACHE))
    parser.add_argument("--out", default=None, help="JSON report; per-example arrays go next to it (.pt)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("IROB_DATA", "/work/shared/datasets")
    from intrinsic_robustness.data.real import load_real

    grid = [float(e) for e in args.eps.split(",")]
    report: dict[str, Any] = {"threads": torch.get_num_threads(), "eps": grid, "torch": torch.__version__,
                              "load_average_start": os.getloadavg(), "models": {}}
    arrays: dict[str, Any] = {}
    x_test, y_test = load_real("mnist", "test", 28)
    for name in args.models.split(","):
        model, info = train_or_load(name, Path(args.cache))
        report["models"][name] = {"training": info, "slices": {}}
        if args.train_only:
            continue
        for a, b in parse_slices(args.slices):
            index = torch.arange(a, b)
            use_cache = args.autoattack_cache and args.seed == 0  # the saved runs used seed 0
            cached = Path(args.autoattack_cache) / f"aa_{name}_{a}_{b}.pt" if use_cache else None
            res, arrays[f"{name}/{a}:{b}"] = compare(model, x_test[a:b], y_test[a:b], index, grid, args.seed,
                                                     f"{name}/{a}:{b}" in args.run_full_cascade.split(","), cached)
            report["models"][name]["slices"][f"{a}:{b}"] = res
            print(json.dumps({"model": name, "slice": f"{a}:{b}", **res}), flush=True)
            save(report, arrays, args.out)
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    save(report, arrays, args.out)


def save(report: dict[str, Any], arrays: dict[str, Any], out: str | None) -> None:
    """Write what has finished so far (AutoAttack makes each slice slow on a CPU)."""
    if out:
        Path(out).write_text(json.dumps(report, indent=1) + "\n")
        torch.save(arrays, Path(out).with_suffix(".pt"))


if __name__ == "__main__":
    main()
