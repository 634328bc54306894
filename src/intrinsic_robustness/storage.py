"""Atomic file writes (temp file + os.replace) for JSON, text and safetensors; nothing is pickled."""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import signal
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from intrinsic_robustness.errors import UserInputError


class WriteFailed(UserInputError):
    """A file could not be written (disk full, quota, read-only or vanished directory): one line naming the file,
    the reason and the free space; the half-written temp file is already gone and earlier work is kept."""


# errno values that mean "the place cannot take this file", said in words a user can act on
_WRITE_REASONS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
                  errno.EPERM: "permission denied", errno.ENOENT: "its directory vanished",
                  errno.EFBIG: "file too large for the file system", errno.EIO: "input/output error"}


def _write_failed(target: Path, exc: OSError) -> WriteFailed:
    import shutil

    from intrinsic_robustness.runtime import human_bytes

    reason = _WRITE_REASONS.get(exc.errno or 0) or " ".join((exc.strerror or str(exc)).split())
    where = _existing_ancestor(target)
    try:
        free = f"{human_bytes(shutil.disk_usage(where).free)} free in {where}"
    except OSError:
        free = f"{where} unreadable"
    return WriteFailed(f"{target}: could not be written ({reason}; {free}); nothing half-written is left: free "
                       "some space (or fix the directory) and rerun: finished work and checkpoints are kept")


def _is_write_fault(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and not isinstance(exc, UserInputError) and exc.errno in _WRITE_REASONS


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` atomically, else it is removed.

    A write that fails for lack of space, quota or permission (or a vanished directory) becomes
    :class:`WriteFailed`, one line naming ``path``; ``path`` itself is never left half-written."""
    target = Path(path)
    blocked = _block_stop_signals()  # a signal between mkstemp and the try below would strand the temp file
    tmp_path: Path | None = None
    try:
        tmp_path = _make_temp(target)
        blocked = _restore_signals(blocked)  # a pending signal is raised here, inside the cleanup's reach
        mask = os.umask(0)  # mkstemp creates 0600; give the final file the usual umask-based mode
        os.umask(mask)
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~mask)  # after writing: some writers (safetensors) recreate the file
        os.replace(tmp_path, target)
    except Exception as exc:  # safetensors wraps OSError in its own error type: look at the cause too
        fault = next((e for e in (exc, exc.__cause__, exc.__context__) if e is not None and _is_write_fault(e)), None)
        if tmp_path is not None and (fault is not None or _says_no_space(exc)):
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)  # first, so the message counts the space it held as free
            raise _write_failed(target, fault or OSError(errno.ENOSPC, "no space")) from None
        raise
    finally:
        _restore_signals(blocked)
        with contextlib.suppress(OSError):
            if tmp_path is not None and tmp_path.exists():
                tmp_path.unlink()


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _block_stop_signals() -> set | None:
    """Hold back stop signals (their handlers raise) while a temp file is created; the old mask, or None."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)


def _restore_signals(old: set | None) -> None:
    """Put back the signal mask saved by :func:`_block_stop_signals` (a no-op for None); returns None."""
    if old is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _make_temp(target: Path) -> Path:
    """An empty temp file beside ``target`` (its directory made first); write faults become WriteFailed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        if _is_write_fault(exc):
            raise _write_failed(target, exc) from None
        raise
    return Path(tmp)


def _says_no_space(exc: BaseException) -> bool:
    """Writers that report a full disk only in their message (safetensors' Rust I/O errors)."""
    text = str(exc).lower()
    return not isinstance(exc, UserInputError) and ("no space left" in text or "quota exceeded" in text)


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
    """Parse a JSON file; missing, truncated, binary or unreadable is a one-line error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: file not found")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); truncated or corrupted? "
                             "regenerate it") from None
    except UnicodeDecodeError:
        raise UserInputError(f"{p}: not valid JSON (binary content, not UTF-8 text); corrupted? "
                             "regenerate it") from None
    except OSError as exc:
        raise UserInputError(f"{p}: cannot be read ({' '.join((exc.strerror or str(exc)).split())})") from None


def check_format(data: Any, source: str | os.PathLike[str], reads: str | Sequence[str],
                 required: bool = True, fix: str = "regenerate the file") -> None:
    """Refuse, in one line, a versioned file whose ``"format"`` is not one this version reads.

    ``reads``: the format names this version understands (``family/N``); ``required=False`` accepts a file
    without the key (written before the key existed). A higher ``N`` of a known family is named as newer;
    ``fix`` is what the user can do instead of upgrading.
    """
    known = (reads,) if isinstance(reads, str) else tuple(reads)
    found = data.get("format") if isinstance(data, dict) else None
    if found in known or (found is None and not required and isinstance(data, dict)):
        return
    shown = "no \"format\" entry" if found is None else f"format {found!r}"
    family, _, version = str(found).rpartition("/")
    newer = [k for k in known if k.rpartition("/")[0] == family and version.isdigit()
             and k.rpartition("/")[2].isdigit() and int(version) > int(k.rpartition("/")[2])]
    hint = (f"written by a newer intrinsic-robustness: upgrade it (pip install -U intrinsic-robustness) or {fix}"
            if newer else f"not a file this version can read: {fix} with this version")
    raise UserInputError(f"{source}: {shown}; this version reads {', '.join(repr(k) for k in known)}; {hint}")


def read_versioned(path: str | os.PathLike[str], reads: str | Sequence[str], required: bool = True,
                   fix: str = "regenerate the file") -> Any:
    """:func:`read_json` followed by :func:`check_format` (a JSON object of a format this version reads)."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object, found {type(data).__name__}; regenerate it")
    check_format(data, path, reads, required, fix)
    return data


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


def safetensors_damage(path: str | os.PathLike[str]) -> str | None:
    """Why a safetensors file is unreadable (truncated, bad header), or None when intact, without loading it:
    the header's length and tensor offsets must match the file's size."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"truncated: {size} bytes, no header"
            n = int.from_bytes(head, "little")
            if n > size - 8:
                return f"truncated: header of {n} bytes in a file of {size}"
            header = json.loads(fh.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"bad header ({' '.join(str(exc).split())[:80]})"
    if not isinstance(header, dict):
        return "bad header (not a JSON object)"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    expected = 8 + n + max(ends, default=0)
    return None if expected == size else f"truncated: {size} bytes, the header describes {expected}"


def set_aside_if_damaged(path: str | os.PathLike[str], what: str) -> bool:
    """A run's own resumable file (checkpoint, finished batch) that is damaged is renamed ``NAME.corrupt`` with
    a warning, so the work is recomputed instead of refused; True when that happened."""
    import logging

    p = Path(path)
    why = safetensors_damage(p) if p.suffix == ".safetensors" else _json_damage(p)
    if why is None:
        return False
    aside = p.with_name(p.name + ".corrupt")
    os.replace(p, aside)
    logging.getLogger(__name__).warning("%s: %s is unreadable (%s); set aside as %s, recomputing it", p, what, why,
                                        aside.name)
    return True


def _json_damage(path: Path) -> str | None:
    try:
        json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON: {' '.join(str(exc).split())[:80]}"
    return None


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
    try:
        target.mkdir(parents=True, exist_ok=True)
        fh = open(target / ".lock", "a+")  # noqa: SIM115 - held open for the lifetime of the lock
    except OSError as exc:
        if _is_write_fault(exc):
            raise _write_failed(target / ".lock", exc) from None
        raise
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = " ".join(fh.read().split()) or "another process"
            raise UserInputError(f"{target}: {what} is in use by {holder}; wait for it to finish or use another "
                                 "directory") from None
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with contextlib.suppress(OSError):  # the holder line is only a courtesy: a full disk must not stop the lock
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {since}\n")
            fh.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        with contextlib.suppress(OSError):  # flushing the holder line may meet the same full disk
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
