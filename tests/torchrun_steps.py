"""Steps that tests/test_distributed.py runs under ``torchrun``: ``python torchrun_steps.py WORK STEP...``.

Each step reads and writes inside WORK; ``irob-NAME`` runs an ``irob`` command line through the console
script's entry point (``intrinsic_robustness.cli.main``), so several commands share one launch. ``*-crash``
steps make rank 1 die like a killed process (``os._exit``) at a chosen call, so the test can check that the
job stops and that a rerun resumes from what was saved.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

TRAIN = {"method": "pgd", "arch": "linear", "eps": 0.3, "epochs": 3, "batch_size": 7, "holdout": 4, "num_steps": 2,
         "step_size": 0.2, "eval_steps": 2, "seed": 5, "device": "cpu"}
STANDARD = {"method": "standard", "arch": "mlp-tiny", "epochs": 2, "batch_size": 8, "holdout": 4, "eval_steps": 1,
            "seed": 2, "device": "cpu"}
EVAL = {"threat": "unconstrained", "attacks": "pgd", "eps": (0.1, 0.3), "batch_size": 2, "seed": 3, "device": "cpu",
        "attack_options": {"pgd": {"num_steps": 3, "step_size": 0.1}}}
SHARDS = {"n_train": 23, "n_test": 11, "seed": 4, "batch_size": 3, "shard_size": 7}


def cli_args(name: str, work: Path, out: str) -> list[str]:
    """The ``irob`` command lines the tests run twice: in one process and under torchrun (``out`` differs)."""
    if name == "lipschitz":
        return ["lipschitz", "--generator", "affine", "--method", "gradient", "--seed", "2", "--device", "cpu",
                "--anchors-per-class", "7", "--batch-size", "4", "--restarts", "1", "--power-iters", "3",
                "--ascent-steps", "2", "--out", str(work / f"{out}.json")]
    if name == "generate":
        return ["generate", "--generator", "affine", "--n-train", "37", "--n-test", "23", "--seed", "3",
                "--batch-size", "5", "--device", "cpu", "--out", str(work / out)]
    if name == "evaluate":
        return ["evaluate", "--classifier", str(work / "clf-single"), "--data", str(work / "data"), "--threat",
                "unconstrained", "--attack", "fmn,pgd", "--eps", "0.1", "--eps", "0.3", "--seed", "6", "--device",
                "cpu", "--batch-size", "4", "--out", str(work / f"{out}.json")]
    raise SystemExit(f"unknown command {name!r}")


def crash_on_rank1(module: Any, name: str, at_call: int) -> None:
    """Wrap ``module.name`` so that rank 1 dies, without cleanup, on its ``at_call``-th call."""
    original = getattr(module, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if os.environ.get("RANK") == "1" and len(calls) == at_call:
            os._exit(17)
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def count_calls(module: Any, name: str, record: Path) -> None:
    """Wrap ``module.name`` so that every call rewrites ``record`` with the number of calls so far."""
    original = getattr(module, name)
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        record.write_text(json.dumps(len(calls)))
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def helpers(work: Path, rank: str) -> None:
    """Rank 0's solo work runs nested helpers as one process; an error on one rank is raised on every rank."""
    from intrinsic_robustness import distributed as d
    from intrinsic_robustness.errors import UserInputError

    nested = d.main_only(lambda: [*d.collect(4, lambda block: [i * i for i in block]), d.world_size()])
    gathered = d.collect(5, lambda block: [(i, d.rank()) for i in block], to_all=False)

    def refuse(block: range) -> list[int]:
        if d.rank() == 1:
            raise UserInputError("rank 1 refuses")
        return list(block)

    try:
        d.collect(3, refuse)
        error = None
    except UserInputError as exc:
        error = str(exc)
    record = {"nested": nested, "gathered": gathered, "error": error, "world": d.world_size()}
    (work / f"helpers-rank{rank}.json").write_text(json.dumps(record))


def run(work: Path, step: str) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.evaluation import run as evaluation
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.training import loop

    rank = os.environ.get("RANK", "0")
    if step.startswith("irob-"):  # the console script's entry point, in this torchrun worker
        from intrinsic_robustness.cli import main

        code = main(cli_args(step[len("irob-"):], work, f"{step}-two"))
        if code != 0:
            raise SystemExit(code)
    elif step == "helpers":
        helpers(work, rank)
    elif step == "shards":
        generate_dataset(make_affine(), work / "shards", **SHARDS)
    elif step == "train-standard":
        loop.fit(load_dataset(work / "data", "train"), out=work / "standard", **STANDARD)
    elif step == "train-ref":
        loop.fit(load_dataset(work / "data", "train"), out=work / "clf-ref", **TRAIN)
    elif step in ("train", "train-crash"):
        if step == "train-crash":
            crash_on_rank1(loop, "_run_epoch", at_call=2)  # dies in epoch 2, after epoch 1's checkpoint
        loop.fit(load_dataset(work / "data", "train"), out=work / "clf", **TRAIN)
    elif step in ("eval-crash", "eval-count"):
        if step == "eval-crash":
            crash_on_rank1(evaluation, "_attack_batch", at_call=2)  # its first batch is saved, the rest not
        else:
            count_calls(evaluation, "_attack_batch", work / f"attacked-rank{rank}.json")
        evaluation.evaluate(str(work / "clf"), str(work / "data"), out=str(work / "eval.json"), **EVAL)
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    for name in sys.argv[2:]:
        run(Path(sys.argv[1]), name)
