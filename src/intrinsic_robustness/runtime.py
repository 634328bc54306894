"""Devices, seeds and the machine: the only place that turns ``--device`` and ``--seed`` into torch objects
(torch is imported on first use, so the CLI can name the defaults without loading it)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from intrinsic_robustness.errors import UserInputError

if TYPE_CHECKING:
    import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# One default for the library, the configs and the CLI: CUDA when available, else CPU.
DEFAULT_DEVICE = "auto"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; asking for CUDA without one is a clear error.

    In a torchrun job, ``cuda`` (no index) means this rank's GPU, ``cuda:LOCAL_RANK``."""
    import torch

    from intrinsic_robustness.distributed import rank_device  # under torchrun, "cuda" is this rank's GPU

    if isinstance(device, torch.device):
        return rank_device(device)
    name = str(device).strip().lower()
    if name == "auto":
        return rank_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserInputError(f"--device {device}: CUDA is not available on this machine; use --device cpu")
        return rank_device(torch.device(name))
    if name == "cpu":
        return torch.device("cpu")
    raise UserInputError(f"--device {device!r} is not one of cpu, cuda, auto")


def derive_seed(base_seed: int, *names: str | int) -> int:
    """A stable 63-bit seed for a named stage, derived from one base seed (no wall clock)."""
    text = ":".join([str(int(base_seed)), *map(str, names)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """An explicit torch.Generator: the only source of randomness library code uses."""
    import torch

    gen = torch.Generator(device=torch.device(device) if not isinstance(device, torch.device) else device)
    gen.manual_seed(int(seed))
    return gen


def stage_generator(base_seed: int, *names: str | int, device: str | torch.device = "cpu") -> torch.Generator:
    """``make_generator(derive_seed(base_seed, *names), device)``: the generator of one named draw."""
    return make_generator(derive_seed(base_seed, *names), device)


@contextlib.contextmanager
def seeded(seed: int, device: str | torch.device | None = None) -> Iterator[None]:
    """torch's global RNG seeded with ``seed`` inside the block and restored after (with ``device``'s CUDA
    generator when it is a CUDA device): for the draws torch makes only from it (layer initialisers, dropout,
    third-party code). Everything else draws from an explicit generator (:func:`make_generator`)."""
    import torch

    dev = None if device is None else torch.device(device)
    with torch.random.fork_rng(devices=[dev] if dev is not None and dev.type == "cuda" else []):
        torch.manual_seed(int(seed))
        yield


def module_device(obj: object) -> torch.device:
    """Device of a module's first parameter or buffer (CPU for anything without either)."""
    import torch

    if isinstance(obj, torch.nn.Module):
        for t in (*obj.parameters(), *obj.buffers()):
            return t.device
    return torch.device("cpu")


def machine_info() -> dict[str, object]:
    """What decides speed and float results on this machine: threads, CPU model and flags, torch build, GPU."""
    import os
    import platform

    import torch

    info: dict[str, object] = {
        "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "cpu": _cpu_model(), "cpu_flags": _cpu_flags(),
        "torch_cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "thread_setup": dict(THREAD_SETUP) or None,
    }
    return info


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            return fh.read()
    except OSError:
        return ""


def _cpu_model() -> str | None:
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or None


def _cpu_flags() -> list[str]:
    """The SIMD flags that change which kernels (and so which float round-off) torch uses."""
    wanted = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    for line in _cpuinfo().splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [f for f in wanted if f in have]
    return []


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or None where it cannot be read."""
    import os

    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(nbytes: float, what: str) -> None:
    """Refuse up front, in one line, a size whose tensors need more memory than the machine has available."""
    free = available_memory()
    if free is not None and nbytes > free:
        raise UserInputError(f"{what}: needs about {human_bytes(nbytes)} of memory, {human_bytes(free)} is "
                             "available; choose a smaller size")


def human_bytes(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(nbytes) < 1024 or unit == "TB":
            return f"{nbytes:.3g} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.3g} PB"


THREAD_SETUP: dict[str, object] = {}  # what configure_threads chose for this process (recorded in meta.json)


def available_cpus() -> tuple[int, int]:
    """(logical CPUs this process may run on, distinct physical cores among them): the affinity mask and the
    cgroup CPU quota (containers, batch jobs) both count, not the machine's total."""
    import os

    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
            with open(base + "physical_package_id") as pkg, open(base + "core_id") as core:
                cores.add((pkg.read().strip(), core.read().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    logical, physical = len(allowed), len(cores)
    quota = _cgroup_cpus()
    if quota is not None:
        logical, physical = min(logical, quota), min(physical, quota)
    return max(1, logical), max(1, physical)


def _cgroup_cpus() -> int | None:
    """Whole CPUs granted by a cgroup v2 quota (``cpu.max``: QUOTA PERIOD), or None without one."""
    import math

    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def configure_threads(threads: int | None = None) -> dict[str, object]:
    """The CPU thread setup of an ``irob`` process, made before torch starts its thread pool.

    Threads: ``threads`` if given, else ``OMP_NUM_THREADS`` if set, else the physical cores this process may use
    (affinity and cgroup quota; torch's own default counts the whole machine). Wait policy: ``OMP_WAIT_POLICY``
    if set, else PASSIVE when the machine is busy at start (:func:`machine_shared`): idle OpenMP threads sleep
    instead of spinning, which avoids a 30x slow-down next to another busy process; on an idle machine it is
    left unset, since spinning is faster there. Once torch is imported its settings are left alone
    (a notebook or test that chose its own threads keeps them).
    """
    import os
    import sys

    logical, physical = available_cpus()
    started = "torch" in sys.modules
    if threads is not None:
        chosen, source = int(threads), "run.threads"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        chosen, source = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        chosen, source = physical, "physical cores available to the process"
    policy = os.environ.get("OMP_WAIT_POLICY")
    load = _load_average()
    if policy is None and not started and machine_shared(load):
        os.environ["OMP_WAIT_POLICY"] = policy = "PASSIVE"
        policy_source = f"irob default: machine shared (1-min load {load[0]:g} >= {SHARED_LOAD:g} at start)"
    elif policy is None and not started:
        policy_source = "unset: idle machine at start (spinning threads are faster alone)"
    else:
        policy_source = "environment" if policy else "unset (torch was already running)"
    if not started:
        os.environ.setdefault("OMP_NUM_THREADS", str(chosen))
    elif threads is not None:
        import torch

        torch.set_num_threads(chosen)
    THREAD_SETUP.update({"threads": chosen, "threads_from": source, "wait_policy": policy or "default",
                         "wait_policy_from": policy_source, "logical_cpus": logical, "physical_cores": physical,
                         "load_average": load})
    return dict(THREAD_SETUP)


# A 1-minute load average at or above this when irob starts means another process is busy on the machine.
SHARED_LOAD = 0.75


def machine_shared(load: list[float] | None) -> bool:
    """Whether to let idle OpenMP threads sleep: only when the machine is busy with other work at start.

    Measured with benchmarks/load.py (irob demo, 2 threads): PASSIVE cost 64% on an idle machine (411 s against
    251 s) but keeps a run next to a busy process near its idle time (387 s); spinning threads are the faster
    choice alone.
    """
    return load is not None and load[0] >= SHARED_LOAD


def _load_average() -> list[float] | None:
    import os

    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
