"""Rich bindings: the progress hooks and the stderr/stdout consoles used by commands.

On a terminal progress is a live rich bar; anywhere else (a batch job's log file, ``nohup``, a pipe) rich
would print nothing until a task ends, so :class:`LineProgressHook` writes one plain line per task start,
at most one per ``interval`` seconds while it runs, and one when it ends.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

out = Console()
err = Console(stderr=True)


def emit_json(data: Any) -> None:
    """A command's machine-readable result: indented JSON on stdout (the one JSON output style)."""
    import json

    import typer

    typer.echo(json.dumps(data, indent=2, allow_nan=False))


class RichProgressHook:
    """Shows every library task as a rich progress bar on stderr; nested tasks stack."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or err
        self._progress: Progress | None = None
        self._open = 0

    def start(self, description: str, total: int | None) -> Any:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TimeRemainingColumn(), console=self._console, transient=False,
            )
            self._progress.start()
        self._open += 1
        return self._progress.add_task(description, total=total)

    def advance(self, task: Any, amount: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(task, amount)

    def finish(self, task: Any) -> None:
        if self._progress is None:
            return
        self._progress.stop_task(task)
        self._open -= 1
        if self._open <= 0:
            self._progress.stop()
            self._progress = None
            self._open = 0


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class LineProgressHook:
    """Progress as plain log lines (for non-terminals): start, every ``interval`` seconds, and end."""

    def __init__(self, stream: TextIO | None = None, interval: float = 30.0) -> None:
        self._stream = stream
        self._interval = float(interval)
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0

    def _write(self, text: str) -> None:
        stream = self._stream or sys.stderr
        stream.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        stream.flush()

    def _line(self, t: dict[str, Any], now: float, final: bool = False) -> str:
        elapsed = now - t["start"]
        done, total = t["done"], t["total"]
        spent = f"{_clock(elapsed)} in total" if final else f"{_clock(elapsed)} elapsed"
        if not total:
            return f"{t['name']} {done} done, {spent}"
        left = f", ~{_clock(elapsed * (total - done) / done)} left" if 0 < done < total and not final else ""
        return f"{t['name']} {done}/{total} ({100 * done / total:.0f}%), {spent}{left}"

    def start(self, description: str, total: int | None) -> Any:
        self._next += 1
        now = time.monotonic()
        self._tasks[self._next] = {"name": description, "total": total, "done": 0, "start": now, "last": now}
        self._write(f"{description}: started" + (f" ({total} steps)" if total else ""))
        return self._next

    def advance(self, task: Any, amount: int = 1) -> None:
        t = self._tasks.get(task)
        if t is None:
            return
        t["done"] += amount
        now = time.monotonic()
        if now - t["last"] >= self._interval:
            t["last"] = now
            self._write(self._line(t, now))

    def finish(self, task: Any) -> None:
        t = self._tasks.pop(task, None)
        if t is not None:
            self._write(self._line(t, time.monotonic(), final=True))


def progress_hook() -> RichProgressHook | LineProgressHook:
    """A live bar on a terminal, log lines elsewhere (``IROB_PROGRESS_SECONDS`` sets their interval, default 30)."""
    import os

    if err.is_terminal:
        return RichProgressHook()
    from intrinsic_robustness.errors import UserInputError

    raw = os.environ.get("IROB_PROGRESS_SECONDS", "30")
    try:
        interval = float(raw)
    except ValueError:
        interval = -1.0
    if not 0 <= interval < float("inf"):
        raise UserInputError(f"IROB_PROGRESS_SECONDS={raw!r} is not a number of seconds >= 0; unset it or use e.g. 30")
    return LineProgressHook(interval=interval)


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def stop_on_signals() -> Any:
    """While active, SIGINT, SIGTERM and SIGHUP raise :class:`~intrinsic_robustness.errors.Interrupted` once (the
    stage unwinds, atomic writes leave no partial file, checkpoints stay); a second one exits at once with 128 +
    signal. A signal the parent ignores (``nohup``, a background job's SIGINT) stays ignored."""
    import contextlib
    import os
    import signal
    import threading

    from intrinsic_robustness.errors import Interrupted

    @contextlib.contextmanager
    def active() -> Any:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        received: list[int] = []

        def handler(signum: int, frame: Any) -> None:
            if received:  # the second signal: no more unwinding
                os.write(2, f"\ninterrupted again by {signal.Signals(signum).name}: exiting at once\n".encode())
                os._exit(128 + signum)
            received.append(signum)
            raise Interrupted(signum)

        previous: dict[int, Any] = {}
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                previous[sig] = signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    return active()


def interrupted_line(exc: BaseException, args: list[str]) -> tuple[str, int]:
    """The one line saying what was saved and how to resume, and the exit status (128 + signal)."""
    import shlex
    import signal

    signum = int(getattr(exc, "signum", signal.SIGINT))
    name = getattr(exc, "signal_name", None) or signal.Signals(signum).name
    stage, run_dir = getattr(exc, "stage", None), getattr(exc, "run_dir", None)
    if stage and run_dir:
        saved = (f" during stage {stage}: the finished stages are kept in {run_dir}, and of {stage} "
                 f"{getattr(exc, 'kept', None) or 'what it checkpointed'}")
    else:
        saved = ": what was finished (checkpoints, finished batches) is kept, nothing is half-written"
    return f"interrupted by {name}{saved}; rerun the same command to resume: irob {shlex.join(args)}", 128 + signum
