"""Thread setup robust to a busy machine (issue 23, under load): threads from the CPUs this process may use, idle
OpenMP threads sleeping (OMP_WAIT_POLICY=PASSIVE) unless the user chose otherwise, set before torch starts, and
recorded in meta.json. The speed itself is measured by benchmarks/load.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from intrinsic_robustness.runtime import SHARED_LOAD, available_cpus, configure_threads, machine_shared

PROBE = """
import json, os, sys
from intrinsic_robustness.cli import main
main(["bound", "--risk", "0.1", "--eps", "1", "--lipschitz", "1"])
import torch
from intrinsic_robustness.runtime import THREAD_SETUP
print(json.dumps({"policy": os.environ.get("OMP_WAIT_POLICY"), "torch_threads": torch.get_num_threads(),
                  "setup": THREAD_SETUP}))
"""


def _probe(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run([sys.executable, "-c", PROBE], env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_available_cpus_are_within_the_machine() -> None:
    logical, physical = available_cpus()
    assert 1 <= physical <= logical <= (os.cpu_count() or logical)
    if hasattr(os, "sched_getaffinity"):
        assert logical <= len(os.sched_getaffinity(0))


def test_irob_sleeps_idle_threads_on_a_shared_machine_and_uses_the_cores_it_may_run_on() -> None:
    got = _probe()
    if machine_shared(got["setup"]["load_average"]):
        assert got["policy"] == "PASSIVE" and got["setup"]["wait_policy_from"].startswith("irob default")
    else:
        assert got["policy"] is None and got["setup"]["wait_policy_from"].startswith("unset: idle machine")
    assert got["torch_threads"] == got["setup"]["threads"] == available_cpus()[1]


def test_passive_only_when_the_machine_is_busy_at_start() -> None:
    assert machine_shared([1.0, 0.5, 0.2]) and machine_shared([SHARED_LOAD, 0.0, 0.0])
    assert not machine_shared([0.1, 2.0, 3.0]) and not machine_shared(None)


def test_the_users_choice_wins() -> None:
    got = _probe(OMP_WAIT_POLICY="ACTIVE", OMP_NUM_THREADS="1")
    assert got["policy"] == "ACTIVE" and got["setup"]["wait_policy_from"] == "environment"
    assert got["torch_threads"] == 1 and got["setup"]["threads_from"] == "OMP_NUM_THREADS"


def test_a_running_torch_is_left_alone() -> None:
    before = torch.get_num_threads()
    setup = configure_threads()
    assert torch.get_num_threads() == before
    assert setup["wait_policy_from"] in ("environment", "unset (torch was already running)")
