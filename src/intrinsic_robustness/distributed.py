"""Several processes under ``torchrun``: this rank, its share of the work, the work gathered back, rank 0 writes.

A process that ``torchrun`` started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in its environment) with a world
of more than one joins a process group the first time it needs one: ``gloo`` on CPU, and ``gloo`` for CPU
tensors plus ``nccl`` for CUDA tensors where CUDA is present. Any other process (plain ``python`` or ``irob``,
or a world of one) is a single process: no group, and every helper here is the identity.

Work is split into contiguous blocks in rank order, so joining the blocks gives back the original order.
Objects travel on a gloo group of their own; a rank waiting for rank 0's solo work waits on another gloo
group with a longer timeout. An error on any rank is raised on every rank at the next gather, and a rank
that dies closes its sockets, so its peers fail at once instead of hanging (``torchrun`` also stops the
rest of the job). Environment knobs: ``IROB_DIST_BACKEND`` (e.g. ``gloo`` to keep CUDA tensors off NCCL),
``IROB_DIST_TIMEOUT`` (seconds a collective may wait, default 1800) and ``IROB_DIST_WAIT_TIMEOUT`` (seconds
a rank waits while rank 0 works alone, default 86400).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from intrinsic_robustness.errors import UserInputError

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

DEFAULT_TIMEOUT = 1800.0
DEFAULT_WAIT_TIMEOUT = 86400.0
_GROUPS: dict[str, Any] = {}
_SOLO: list[bool] = []  # non-empty while rank 0 runs a main_only step alone


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        return int(text)
    except ValueError:
        raise UserInputError(f"environment {name}={text!r}: expected an integer (torchrun sets it)") from None


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    try:
        value = default if text is None or not text.strip() else float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserInputError(f"environment {name}={text!r}: expected a positive number of seconds")
    return value


def world_size() -> int:
    """Number of processes in the job (1 outside ``torchrun``, and inside rank 0's solo work)."""
    return 1 if _SOLO else job_size()


def job_size() -> int:
    """Number of processes ``torchrun`` started (unlike :func:`world_size`, also inside rank 0's solo work)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's global rank (0 outside ``torchrun``)."""
    return _env_int("RANK", 0) if job_size() > 1 else 0


def local_rank() -> int:
    """This process's rank on its node (picks its GPU)."""
    return _env_int("LOCAL_RANK", 0) if job_size() > 1 else 0


def is_distributed() -> bool:
    """True in a ``torchrun`` job of more than one process."""
    return world_size() > 1


def is_main() -> bool:
    """True on global rank 0, the one rank that writes files (always true for a single process)."""
    return rank() == 0


def rank_device(device: torch.device) -> torch.device:
    """``cuda`` without an index becomes this rank's GPU, ``cuda:LOCAL_RANK`` (wrapping round when ranks
    outnumber GPUs); an explicit index, CPU, and single processes are left alone."""
    import torch

    if device.type != "cuda" or device.index is not None or job_size() == 1:
        return device
    return torch.device("cuda", local_rank() % max(1, torch.cuda.device_count()))


def backend() -> str:
    """The default group's backend: ``IROB_DIST_BACKEND``, else gloo, plus nccl for CUDA tensors when usable."""
    import torch
    import torch.distributed as dist

    chosen = os.environ.get("IROB_DIST_BACKEND", "").strip()
    if chosen:
        return chosen
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init() -> None:
    """Join the job's process group once (a no-op for a single process or when already joined)."""
    if not is_distributed() or _GROUPS:
        return
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        raise UserInputError("torchrun job: this torch build has no torch.distributed/gloo; install a full torch")
    chosen = backend()
    if "nccl" in chosen and torch.cuda.is_available():
        torch.cuda.set_device(local_rank() % torch.cuda.device_count())
    timeout = timedelta(seconds=_env_seconds("IROB_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    wait = timedelta(seconds=_env_seconds("IROB_DIST_WAIT_TIMEOUT", DEFAULT_WAIT_TIMEOUT))
    if not dist.is_initialized():
        dist.init_process_group(backend=chosen, timeout=timeout)
        atexit.register(shutdown)
    _GROUPS["objects"] = dist.new_group(backend="gloo", timeout=timeout)
    _GROUPS["wait"] = dist.new_group(backend="gloo", timeout=wait)


def shutdown() -> None:
    """Leave the process group (registered at exit; safe to call twice)."""
    import torch.distributed as dist

    _GROUPS.clear()
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # leaving while a peer is gone must not mask the real error
            dist.destroy_process_group()


def _group(name: str) -> Any:
    init()
    return _GROUPS[name]


def share(n: int, part: int | None = None, parts: int | None = None) -> range:
    """Rank ``part``'s contiguous block of ``range(n)`` out of ``parts`` (default: this rank of this job).

    Blocks differ in size by at most one (the first ``n % parts`` are one longer) and follow rank order.
    """
    parts = world_size() if parts is None else int(parts)
    part = rank() if part is None else int(part)
    if n < 0 or parts < 1 or not 0 <= part < parts:
        raise ValueError(f"share({n}, part={part}, parts={parts}): need n >= 0 and 0 <= part < parts")
    size, extra = divmod(n, parts)
    start = part * size + min(part, extra)
    return range(start, start + size + (1 if part < extra else 0))


def _portable(exc: BaseException) -> tuple[str, str]:
    """An error as plain text (its type name and message) to send to the other ranks: no exception object is
    pickled, so a peer's error can only become one of the types :func:`_rebuild` knows."""
    return type(exc).__name__, str(exc)


def _rebuild(payload: tuple[str, str]) -> BaseException:
    """The exception a peer reported: the same type where it is one of ours or a builtin we know, else a
    RuntimeError naming it."""
    from intrinsic_robustness.errors import UserInputError

    name, message = payload
    known = {cls.__name__: cls for cls in (UserInputError, ValueError, TypeError, KeyError, RuntimeError,
                                           FileNotFoundError, OSError, MemoryError)}
    return known[name](message) if name in known else RuntimeError(f"{name}: {message}")


def _raise_first(outcomes: Sequence[tuple[str, Any]], mine: BaseException | None) -> None:
    """Raise the lowest rank's error (this rank's own exception, traceback and all, when it is the one)."""
    for source, (status, payload) in enumerate(outcomes):
        if status == "error":
            raise (mine if source == rank() and mine is not None else _rebuild(payload))


def collect(n: int, compute: Callable[[range], Sequence[T]], to_all: bool = True) -> list[T]:
    """Items 0..n-1 in order: each rank computes ``compute(share(n))`` (one item per index of its block).

    Every rank gets the whole list (``to_all``), or only rank 0 does and the others get ``[]``. An error on
    any rank is raised on every rank. A single process simply returns ``list(compute(range(n)))``.
    """
    block = share(n)
    if not is_distributed():
        return list(compute(block))
    import torch.distributed as dist

    group = _group("objects")  # join before the work, so no rank waits in the rendezvous while others compute
    mine: BaseException | None = None
    try:
        items = list(compute(block))
        if len(items) != len(block):
            raise RuntimeError(f"rank {rank()}: computed {len(items)} items for a block of {len(block)}")
        outcome: tuple[str, Any] = ("ok", items)
    except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
        mine, outcome = exc, ("error", _portable(exc))
    gathered: list[Any] = [None] * world_size()
    if to_all:
        dist.all_gather_object(gathered, outcome, group=group)
        _raise_first(gathered, mine)
        return [item for _, items in gathered for item in items]
    dist.gather_object(outcome, gathered if is_main() else None, dst=0, group=group)
    box: list[Any] = [None]
    if is_main():
        box[0] = next(((i, o[1]) for i, o in enumerate(gathered) if o[0] == "error"), None)
    dist.broadcast_object_list(box, src=0, group=group)
    if box[0] is not None:
        source, error = box[0]
        raise (mine if source == rank() and mine is not None else _rebuild(error))
    return [item for _, items in gathered for item in items] if is_main() else []


def main_only(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on rank 0 while the others wait; every rank returns its value or raises its error."""
    if not is_distributed():
        return fn(*args, **kwargs)
    import torch.distributed as dist

    group = _group("wait")  # join first: rank 0's work may outlast the rendezvous timeout
    mine: BaseException | None = None
    box: list[Any] = [None]
    if is_main():
        _SOLO.append(True)  # alone, rank 0 is a single process: helpers called inside fn do not wait for peers
        try:
            box[0] = ("ok", fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - re-raised below on every rank
            mine, box[0] = exc, ("error", _portable(exc))
        finally:
            _SOLO.pop()
    dist.broadcast_object_list(box, src=0, group=group)
    status, value = box[0]
    if status == "error":
        raise (mine if mine is not None else _rebuild(value))
    return value


def barrier(wait: bool = False) -> None:
    """All ranks meet here; ``wait`` uses the long timeout meant for waiting on rank 0's solo work."""
    if is_distributed():
        import torch.distributed as dist

        dist.barrier(group=_group("wait" if wait else "objects"))


def all_reduce_sum_(tensors: Sequence[torch.Tensor]) -> None:
    """Sum ``tensors`` over all ranks in place: one collective per dtype, on their device's backend."""
    _flat_collective(tensors, "sum")


def broadcast_(tensors: Sequence[torch.Tensor]) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's values (one collective per dtype)."""
    _flat_collective(tensors, "broadcast")


def _flat_collective(tensors: Sequence[torch.Tensor], op: str) -> None:
    if not is_distributed() or not tensors:
        return
    import torch
    import torch.distributed as dist

    init()
    by_dtype: dict[Any, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault((t.dtype, t.device), []).append(t)
    with torch.no_grad():
        for group in by_dtype.values():
            flat = torch.cat([t.detach().reshape(-1) for t in group])
            if op == "sum":
                dist.all_reduce(flat)
            else:
                dist.broadcast(flat, src=0)
            offset = 0
            for t in group:
                t.copy_(flat[offset:offset + t.numel()].view_as(t))
                offset += t.numel()
