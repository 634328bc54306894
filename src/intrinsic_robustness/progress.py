"""One progress hook for the whole library; the CLI binds it to rich, library code never prints.

Library code wraps long loops with :func:`track`. By default nothing is shown; ``irob`` installs a
rich-backed hook. Tests may install their own hook to observe progress.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

T = TypeVar("T")


class ProgressHook(Protocol):
    """Receives progress of one task: ``start`` once, ``advance`` any number of times, ``finish`` once."""

    def start(self, description: str, total: int | None) -> object: ...
    def advance(self, task: object, amount: int = 1) -> None: ...
    def finish(self, task: object) -> None: ...


class _Silent:
    def start(self, description: str, total: int | None) -> object:
        return None

    def advance(self, task: object, amount: int = 1) -> None:
        return None

    def finish(self, task: object) -> None:
        return None


_hook: ProgressHook = _Silent()


def set_progress_hook(hook: ProgressHook | None) -> ProgressHook:
    """Install ``hook`` (None restores the silent default); returns the previous hook."""
    global _hook
    previous = _hook
    _hook = hook if hook is not None else _Silent()
    return previous


def get_progress_hook() -> ProgressHook:
    return _hook


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield from ``iterable`` while reporting one step per item to the installed hook."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    hook = _hook
    task = hook.start(description, total)
    try:
        for item in iterable:
            yield item
            hook.advance(task, 1)
    finally:
        hook.finish(task)


@contextlib.contextmanager
def task(description: str, total: int | None = None) -> Iterator[object]:
    """Context manager form: ``with task("epochs", n) as t: ... advance(t)``."""
    hook = _hook
    handle = hook.start(description, total)
    try:
        yield handle
    finally:
        hook.finish(handle)


def advance(handle: object, amount: int = 1) -> None:
    _hook.advance(handle, amount)
