"""Atomic file writes (temp file + os.replace) for JSON, text and safetensors; nothing is pickled."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from intrinsic_robustness.errors import UserInputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically, else it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    mask = os.umask(0)  # mkstemp creates 0600; give the final file the usual umask-based mode
    os.umask(mask)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~mask)  # after writing: some writers (safetensors) recreate the file
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _jsonable(obj: Any) -> Any:
    """Non-finite floats become null so the JSON stays standard (readers map null back to inf)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _jsonable(obj.item())
    return obj


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: file not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, Any],
                 metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (tensors are made contiguous and moved to CPU)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(clean, str(tmp), metadata=metadata)


def load_tensors(path: str | os.PathLike[str], device: str = "cpu") -> dict[str, Any]:
    """Read a safetensors file (never executes code); a missing or corrupt file is a one-line error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: file not found")
    try:
        return load_file(str(p), device=device)
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserInputError(f"{p}: not a readable safetensors file ({exc})") from None


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike[str], what: str = "output directory") -> Iterator[None]:
    """Hold ``directory/.lock`` for the duration: a second writer is refused at once, naming the holder.

    The lock is an advisory ``flock`` on an open file, so the kernel drops it when the holder exits for any
    reason (a crash or SIGKILL never leaves it stuck); the file only records who holds it. Reentrant within a
    process (a pipeline stage may call a library function that locks the same directory). In a torchrun job
    only rank 0 takes the lock; the other ranks of the job work under it.
    """
    import fcntl
    import socket

    from intrinsic_robustness.distributed import is_main

    target = Path(directory)
    key = str(target.resolve())
    if key in _HELD or not is_main():
        yield
        return
    target.mkdir(parents=True, exist_ok=True)
    fh = open(target / ".lock", "a+")  # noqa: SIM115 - held open for the lifetime of the lock
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = " ".join(fh.read().split()) or "another process"
            raise UserInputError(f"{target}: {what} is in use by {holder}; wait for it to finish or use another "
                                 "directory") from None
        fh.seek(0)
        fh.truncate()
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}\n")
        fh.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


_HELD: set[str] = set()


def check_output(path: str | os.PathLike[str], flag: str = "--out", kind: str = "file") -> Path:
    """Refuse at once, in one line, an output path that cannot be written (``kind``: ``file`` or ``directory``).

    Empty, a directory where a file goes (or a file where a directory goes), an ancestor that is a file, or no
    write permission; nothing is created.
    """
    text = os.fspath(path)
    if not text.strip():
        raise UserInputError(f"{flag} '': empty; give a {kind} path")
    target = Path(text).expanduser()
    if kind == "file" and target.is_dir():
        raise UserInputError(f"{flag} {target}: is a directory; give a file path")
    if kind == "directory" and target.exists() and not target.is_dir():
        raise UserInputError(f"{flag} {target}: exists and is not a directory; choose another path")
    existing = target if kind == "directory" and target.is_dir() else _existing_ancestor(target)
    if not existing.is_dir():
        raise UserInputError(f"{flag} {target}: {existing} is a file, not a directory; choose another path")
    effective = os.access in os.supports_effective_ids
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=effective):
        raise UserInputError(f"{flag} {target}: cannot write in {existing} (permission denied); choose another path")
    return target


def _existing_ancestor(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


@contextlib.contextmanager
def clean_on_failure(*paths: str | os.PathLike[str]) -> Iterator[None]:
    """If the block fails, remove what it created at ``paths`` (and new parent directories) as long as that
    holds no work: only directories and lock files. A resumable checkpoint is never removed."""
    created = [_first_missing(Path(p)) for p in paths]
    try:
        yield
    except BaseException:
        for top in created:
            if top is not None and top.is_dir() and _scaffolding_only(top):
                import shutil

                shutil.rmtree(top, ignore_errors=True)
        raise


def _first_missing(path: Path) -> Path | None:
    """The topmost ancestor of ``path`` (itself included) that does not exist yet, or None."""
    path = path.absolute()
    if path.exists():
        return None
    top = path
    while not top.parent.exists() and top.parent != top.parent.parent:
        top = top.parent
    return top


def _scaffolding_only(directory: Path) -> bool:
    return all(p.is_dir() or p.name == ".lock" for p in directory.rglob("*"))


def check_free_space(path: str | os.PathLike[str], nbytes: float, what: str) -> None:
    """Refuse up front, in one line, writing ``nbytes`` where the file system has less free space."""
    import shutil

    from intrinsic_robustness.runtime import human_bytes

    where = _existing_ancestor(Path(path))
    free = shutil.disk_usage(where).free
    if nbytes > free:
        raise UserInputError(f"{what}: needs about {human_bytes(nbytes)} on disk, {human_bytes(free)} is free in "
                             f"{where}; choose a smaller size or another place")
