"""Named registries for every extensible concept (attacks, Lipschitz estimators, architectures, training
methods, generator families, report figures): one registration makes an entry known to the library, the
config validation, the CLI's choices and the report's labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from intrinsic_robustness.errors import UserInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name, with optional aliases and free-form info (labels, threat, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict[str, Any]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, entry: T | None = None, *, aliases: tuple[str, ...] = (),
                 **info: Any) -> Any:
        """Register ``entry`` under ``name`` (usable as a decorator when ``entry`` is omitted)."""
        def add(obj: T) -> T:
            taken = [n for n in (name, *aliases) if n in self._entries or n in self._aliases]
            if taken:
                raise ValueError(f"{self.kind} registry: {taken} already registered")
            self._entries[name], self._info[name] = obj, dict(info)
            self._aliases.update({alias: name for alias in aliases})
            return obj

        return add(entry) if entry is not None else add

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases; unknown names are a one-line error."""
        key = str(name).strip()
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise UserInputError(f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def info(self, name: str) -> dict[str, Any]:
        return dict(self._info[self.canonical(name)])

    def names(self, **where: Any) -> tuple[str, ...]:
        """Registered names (no aliases), optionally only those whose info matches every ``where`` item."""
        return tuple(n for n in self._entries if all(self._info[n].get(k) == v for k, v in where.items()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

