"""Several processes give the single-process answer: ``torchrun --standalone --nproc-per-node 2`` on CPU (gloo)
for ``irob lipschitz``, ``irob generate``, ``irob evaluate`` (one launch runs the three command lines through
the console script's entry point, to save launches) and ``irob run`` (its own launch) against single runs of
the same commands (same JSON numbers, same dataset bytes); data-parallel training equal to one process up to
float rounding where nothing is random; and (marked slow: three launches) a rank killed mid-job stops the
job, a rerun resumes from the shared checkpoints, training is deterministic for its world size. Plus the
splitting arithmetic itself, in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from intrinsic_robustness import distributed
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import load_tensors

STEPS = Path(__file__).with_name("torchrun_steps.py")
sys.path.insert(0, str(STEPS.parent))
import torchrun_steps as steps  # noqa: E402 - the same settings the launched steps use

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this torch build has no torch.distributed with gloo, so no 2-process CPU job can run",
)

TINY_RUN = """
[run]
name = "tiny"
seed = 0
device = "cpu"

[generator]
source = "load"
spec = "affine"

[lipschitz]
methods = ["sampling", "gradient"]
anchors_per_class = 5
neighbors = 6
options = { batch_size = 12, power_iters = 2, ascent_steps = 1, restarts = 1 }

[dataset]
n_train = 40
n_test = 14
batch_size = 6

[[classifiers]]
name = "std"
method = "standard"
arch = "linear"
epochs = 2
batch_size = 8
options = { holdout = 4, eval_steps = 2 }

[evaluation]
threats = ["unconstrained", "in-distribution"]
eps = [0.1, 0.3]
batch_size = 4
attacks = { unconstrained = ["pgd"], in-distribution = ["latent"] }
attack_options = { pgd = { num_steps = 4, step_size = 0.1 }, latent = { search_steps = 1, num_steps = 4 } }

[report]
samples_per_class = 2
adversarial_examples = 2
"""


def torchrun(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Two CPU ranks on this machine, one thread each; collectives time out after 120 s instead of hanging."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IROB_DIST_TIMEOUT": "120", "IROB_DIST_WAIT_TIMEOUT": "240"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def irob2(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = torchrun(["-m", "intrinsic_robustness.cli", *args], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def numbers(path: Path) -> Any:
    """A result file's JSON without its wall-clock fields (everything else must match exactly)."""
    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("seconds", "train_seconds")}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return strip(json.loads(path.read_text()))


def assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_tensors(a), load_tensors(b)
    assert sorted(ta) == sorted(tb)
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key


def assert_same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small affine dataset and a classifier trained on it by one process."""
    from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset
    from intrinsic_robustness.generators import make_affine
    from intrinsic_robustness.training import fit

    root = tmp_path_factory.mktemp("dist")
    generate_dataset(make_affine(), root / "data", n_train=30, n_test=15, seed=1, batch_size=7)
    fit(load_dataset(root / "data", "train"), "standard", arch="linear", epochs=1, batch_size=8, holdout=3,
        eval_steps=1, device="cpu", out=root / "clf-single")
    return root


# ---- in-process: the splitting arithmetic and the single-process identities --------------------------------

@given(st.integers(0, 200), st.integers(1, 9))
def test_share_partitions_in_rank_order(n: int, parts: int) -> None:
    blocks = [distributed.share(n, p, parts) for p in range(parts)]
    assert [i for b in blocks for i in b] == list(range(n))
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_single_process_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert (distributed.world_size(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert not distributed.is_distributed()
    assert distributed.collect(5, lambda block: [i * i for i in block]) == [0, 1, 4, 9, 16]
    assert distributed.main_only(lambda a, b: a + b, 2, b=3) == 5
    t = torch.ones(3)
    distributed.all_reduce_sum_([t])
    distributed.broadcast_([t])
    distributed.barrier()
    assert torch.equal(t, torch.ones(3)) and not distributed._GROUPS
    assert distributed.rank_device(torch.device("cuda")) == torch.device("cuda")


def test_bad_launcher_environment_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserInputError, match="WORLD_SIZE"):
        distributed.world_size()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("IROB_DIST_TIMEOUT", "-5")
    with pytest.raises(UserInputError, match="IROB_DIST_TIMEOUT"):
        distributed._env_seconds("IROB_DIST_TIMEOUT", 1.0)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_rank_rows_cover_each_batch_with_weights_summing_to_one(monkeypatch: pytest.MonkeyPatch,
                                                                world: int) -> None:
    from intrinsic_robustness.training.loop import _my_rows

    monkeypatch.setenv("WORLD_SIZE", str(world))
    for size in (1, world - 1, world, 7, 16):
        batch = torch.randperm(50)[:size]
        rows, weights = [], []
        for r in range(world):
            monkeypatch.setenv("RANK", str(r))
            idx, weight = _my_rows(batch)
            rows += idx.tolist() if weight > 0 else []
            weights.append(weight)
            assert len(idx) >= 1 and (weight > 0 or idx.tolist() == batch[:1].tolist())
        assert rows == batch.tolist() and sum(weights) == pytest.approx(1.0)


class Wavy(torch.nn.Module):
    """A small nonlinear conditional generator with [0, 1] output (sigmoid of a random two-layer net)."""

    def __init__(self, latent_dim: int = 5, num_classes: int = 2) -> None:
        super().__init__()
        self.latent_dim, self.num_classes, self.image_shape = latent_dim, num_classes, (1, 3, 3)
        torch.manual_seed(11)
        self.net = torch.nn.Sequential(torch.nn.Linear(latent_dim + num_classes, 16), torch.nn.Tanh(),
                                       torch.nn.Linear(16, 9))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(y, self.num_classes).to(z)
        return torch.sigmoid(3 * self.net(torch.cat([z, onehot], 1))).view(-1, 1, 3, 3)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator)


@pytest.mark.parametrize(("method", "options"), [
    ("sampling", {"neighbors": 5, "batch_size": 11}),
    ("paper-sampling", {"neighbors": 3, "batch_size": 7}),
    ("gradient", {"power_iters": 3, "ascent_steps": 2, "restarts": 2, "batch_size": 7}),
])
@pytest.mark.parametrize("n", [1, 6, 13])
def test_estimator_chunks_reproduce_the_whole_class(method: str, options: dict[str, int], n: int) -> None:
    """What a rank computes (its chunks, named by their class index) equals the single-process values bit for bit."""
    from intrinsic_robustness.lipschitz import class_anchors, make_estimator
    from intrinsic_robustness.lipschitz.estimate import _runs, work_units

    gen, est = Wavy(), make_estimator(method, **options)
    for label in range(gen.num_classes):
        z = class_anchors(gen, label, n, seed=4)
        whole, used = est.values(gen, z, label, 0.7, 4)
        units = work_units([label], n, est.chunk_size())
        assert [u[1] for u in units] == list(range(0, n, est.chunk_size()))
        for cut in range(len(units) + 1):  # any split point between two "ranks"
            pieces, spent = [], 0
            for lab, lo, hi, _ in _runs(units[:cut]) + _runs(units[cut:]):
                values, cost = est.values(gen, z[lo:hi], lab, 0.7, 4, first=lo)
                pieces.append(values)
                spent += cost
            assert torch.equal(torch.cat(pieces), whole) and spent == used


def test_work_units_merge_back_into_runs() -> None:
    from intrinsic_robustness.lipschitz.estimate import _runs, work_units

    units = work_units([0, 2], 5, 2)
    assert units == [(0, 0, 2), (0, 2, 4), (0, 4, 5), (2, 0, 2), (2, 2, 4), (2, 4, 5)]
    assert [r[:3] for r in _runs(units[1:5])] == [(0, 2, 5), (2, 0, 4)]
    assert work_units([1], 4, None) == [(1, 0, 4)]


# ---- two processes against one --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_ranks(work: Path) -> Path:
    """One 2-rank launch for ``irob lipschitz``, ``irob generate`` and ``irob evaluate`` (through the console
    script's entry point), the helpers, sharded generation and data-parallel training; outputs land in ``work``."""
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        pytest.skip("this torch build has no torch.distributed with gloo")
    names = ["irob-lipschitz", "irob-generate", "irob-evaluate", "helpers", "shards", "train-standard"]
    done = torchrun([str(STEPS), str(work), *names], work)
    assert done.returncode == 0, done.stderr[-3000:]
    return work


def one_process(name: str, work: Path) -> None:
    from intrinsic_robustness.cli import main

    assert main(steps.cli_args(name, work, f"irob-{name}-one")) == 0


@needs_gloo
def test_lipschitz_two_ranks_equal_one(two_ranks: Path) -> None:
    one_process("lipschitz", two_ranks)
    assert numbers(two_ranks / "irob-lipschitz-two.json") == numbers(two_ranks / "irob-lipschitz-one.json")


@needs_gloo
def test_generate_two_ranks_write_the_same_bytes(two_ranks: Path) -> None:
    one_process("generate", two_ranks)
    assert_same_files(two_ranks / "irob-generate-one", two_ranks / "irob-generate-two")


@needs_gloo
def test_evaluate_two_ranks_equal_one(two_ranks: Path) -> None:
    one_process("evaluate", two_ranks)
    assert numbers(two_ranks / "irob-evaluate-two.json") == numbers(two_ranks / "irob-evaluate-one.json")
    assert_same_tensors(two_ranks / "irob-evaluate-one.safetensors", two_ranks / "irob-evaluate-two.safetensors")
    assert not (two_ranks / "irob-evaluate-two.json.partial").exists()


@needs_gloo
def test_helpers_across_two_processes(two_ranks: Path) -> None:
    """Rank 0's solo work runs nested helpers as one process; gathers keep order; one rank's error is raised
    on both."""
    seen = [json.loads((two_ranks / f"helpers-rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["nested"] for s in seen] == [[0, 1, 4, 9, 1]] * 2
    assert seen[0]["gathered"] == [[0, 0], [1, 0], [2, 0], [3, 1], [4, 1]] and seen[1]["gathered"] == []
    assert [s["error"] for s in seen] == ["rank 1 refuses"] * 2 and [s["world"] for s in seen] == [2, 2]


@needs_gloo
def test_small_shards_written_as_by_one_process(two_ranks: Path, tmp_path: Path) -> None:
    from intrinsic_robustness.data.synthetic import generate_dataset
    from intrinsic_robustness.generators import make_affine

    generate_dataset(make_affine(), tmp_path / "shards-one", **steps.SHARDS)
    assert len(list((two_ranks / "shards").glob("*.safetensors"))) == 6
    assert_same_files(tmp_path / "shards-one", two_ranks / "shards")


@needs_gloo
def test_data_parallel_training_matches_one_process(two_ranks: Path, tmp_path: Path) -> None:
    """Standard training has nothing random: two ranks end where one process does, up to float rounding."""
    from intrinsic_robustness.data.synthetic import load_dataset
    from intrinsic_robustness.training import fit

    fit(load_dataset(two_ranks / "data", "train"), out=tmp_path / "standard-one", **steps.STANDARD)
    w1, w2 = (load_tensors(d / "model.safetensors") for d in (tmp_path / "standard-one", two_ranks / "standard"))
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6)
    assert json.loads((two_ranks / "standard" / "config.json").read_text())["world_size"] == 2


@needs_gloo
def test_run_two_ranks_redo_the_sharded_stages_exactly(tmp_path: Path) -> None:
    """A finished single-process run, copied, then lipschitz, dataset, evaluation and report redone by 2 ranks:
    the dataset fingerprint is unchanged (so the classifier is not retrained) and every number matches."""
    from intrinsic_robustness import api

    (tmp_path / "tiny.toml").write_text(TINY_RUN)
    one = api.run(tmp_path / "tiny.toml", tmp_path / "one")
    shutil.copytree(one, tmp_path / "two")
    irob2(["run", "tiny.toml", "--run-dir", "two", "--force", "lipschitz", "--force", "dataset", "--force",
           "evaluation", "--force", "report"], tmp_path)
    two = tmp_path / "two"
    meta_one, meta_two = (json.loads((d / "meta.json").read_text()) for d in (one, two))
    assert meta_two["device"]["world_size"] == 2 and "world_size" not in meta_one["device"]
    assert meta_two["stages"]["classifiers/std"] == meta_one["stages"]["classifiers/std"]  # skipped, untouched
    for stage in ("dataset", "classifiers/std"):
        assert meta_two["stages"][stage]["fingerprint"] == meta_one["stages"][stage]["fingerprint"]
    for stage in ("lipschitz/sampling", "lipschitz/gradient", "evaluation/std", "report"):
        assert meta_two["stages"][stage]["finished"] >= meta_one["stages"][stage]["finished"]
        assert meta_two["stages"][stage]["status"] == "done"
    for rel in ("lipschitz/sampling.json", "lipschitz/gradient.json", "eval/std/unconstrained.json",
                "eval/std/in-distribution.json"):
        assert numbers(two / rel) == numbers(one / rel), rel
    for rel in ("eval/std/unconstrained.safetensors", "eval/std/in-distribution.safetensors"):
        assert_same_tensors(one / rel, two / rel)
    assert_same_files(one / "dataset", two / "dataset")
    assert (two / "report" / "report.html").is_file()


@needs_gloo
@pytest.mark.slow  # three launches: 48 s on this 2-core machine at load 12
def test_killed_rank_stops_the_job_and_reruns_resume(work: Path, tmp_path: Path) -> None:
    """Three launches: (1) PGD data-parallel training, then the same again with rank 1 killed in epoch 2;
    (2) the rerun resumes and ends with the uninterrupted run's weights, then an evaluation with rank 1 killed
    at its second batch; (3) the rerun attacks only the batches not saved and equals one process."""
    from intrinsic_robustness.evaluation import evaluate

    shutil.copytree(work / "data", tmp_path / "data")
    step = [str(STEPS), str(tmp_path)]
    started = time.perf_counter()
    first = torchrun([*step, "train-ref", "train-crash"], tmp_path)
    assert first.returncode != 0 and time.perf_counter() - started < 200  # stopped, not hung
    clf = tmp_path / "clf"
    assert (clf / "checkpoint.safetensors").is_file() and not (clf / "model.safetensors").exists()
    assert len((clf / "history.jsonl").read_text().splitlines()) == 1

    second = torchrun([*step, "train", "eval-crash"], tmp_path)
    assert second.returncode != 0
    assert (clf / "model.safetensors").read_bytes() == (tmp_path / "clf-ref" / "model.safetensors").read_bytes()
    saved = sorted(p.name for p in (tmp_path / "eval.json.partial").glob("batch-*.safetensors"))
    assert "batch-00004.safetensors" in saved and not (tmp_path / "eval.json").exists()  # rank 1's first batch

    third = torchrun([*step, "eval-count"], tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    attacked = {r: json.loads(f.read_text()) if (f := tmp_path / f"attacked-rank{r}.json").is_file() else 0
                for r in (0, 1)}
    assert attacked[1] == 3 and attacked[0] + attacked[1] == 8 - len(saved)  # 15 examples, batches of 2
    evaluate(str(clf), str(tmp_path / "data"), out=str(tmp_path / "one.json"), **steps.EVAL)
    assert numbers(tmp_path / "eval.json") == numbers(tmp_path / "one.json")
    assert_same_tensors(tmp_path / "one.safetensors", tmp_path / "eval.safetensors")
    assert not (tmp_path / "eval.json.partial").exists()


def test_errors_travel_between_ranks_as_text_not_pickled_objects():
    from intrinsic_robustness.distributed import _portable, _rebuild
    from intrinsic_robustness.errors import UserInputError

    sent = _portable(UserInputError("--eps -1: must be >= 0"))
    assert sent == ("UserInputError", "--eps -1: must be >= 0")
    back = _rebuild(sent)
    assert type(back) is UserInputError and str(back) == "--eps -1: must be >= 0"

    class Custom(Exception):
        pass

    other = _rebuild(_portable(Custom("odd")))
    assert type(other) is RuntimeError and str(other) == "Custom: odd"
