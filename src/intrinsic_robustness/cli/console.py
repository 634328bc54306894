"""Rich bindings: the progress hook and the stderr/stdout consoles used by commands."""

from __future__ import annotations

from typing import Any

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
