"""The config as text: reading a TOML file, applying ``--set section.key=value`` overrides, writing TOML.

Validation lives in :mod:`.config`; this module knows only the section names.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from intrinsic_robustness.errors import UserInputError

SECTIONS = ("run", "generator", "lipschitz", "dataset", "classifiers", "evaluation", "report", "concentration")


def _parse_value(text: str) -> Any:
    """A ``--set`` value read as TOML (numbers, booleans, lists, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(data: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list):
            node = _list_entry(node, part, item)
        else:
            if part not in node:
                if i == 0 and part not in SECTIONS:
                    raise UserInputError(
                        f"--set {item}: unknown section {part!r}; sections: {', '.join(SECTIONS)}"
                    )
                node[part] = {}
            node = node[part]
    last = path[-1]
    if isinstance(node, list):
        raise UserInputError(
            f"--set {item}: name a key inside the list entry, e.g. classifiers.NAME.epochs=3"
        )
    if not isinstance(node, dict):
        raise UserInputError(f"--set {item}: {'.'.join(path[:-1])} is not a table")
    node[last] = value


def _list_entry(entries: list[Any], part: str, item: str) -> dict[str, Any]:
    """A list entry by its ``name`` (classifiers.std) or by index (classifiers.0)."""
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == part:
            return entry
    if part.isdigit() and int(part) < len(entries):
        return entries[int(part)]
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    raise UserInputError(f"--set {item}: no list entry {part!r}; use a name among {names} or an index")


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as TOML) to a raw config dict, in order."""
    for item in overrides:
        key, sep, text = item.partition("=")
        path = [p.strip() for p in key.strip().split(".")]
        if not sep or len(path) < 2 or not all(path):
            raise UserInputError(
                f"--set {item!r}: expected section.key=value, e.g. --set dataset.n_train=1000"
            )
        _set_path(data, path, _parse_value(text.strip()), item)
    return data


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML file with one-line errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{p}: config file not found; pass a TOML file such as configs/demo.toml")
    try:
        return tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UserInputError(f"{p}: not valid TOML ({' '.join(str(exc).split())})") from None


def to_toml(data: dict[str, Any]) -> str:
    """A resolved config (``config_to_dict`` output) as TOML text (what ``irob config show`` prints)."""
    lines: list[str] = []
    for section in SECTIONS:
        value = data.get(section)
        if value is None:  # an optional section left out (concentration)
            continue
        if isinstance(value, list):
            for entry in value:
                lines += [f"[[{section}]]", *_toml_table(entry, section), ""]
        else:
            lines += [f"[{section}]", *_toml_table(value, section), ""]
    return "\n".join(lines)


def _toml_table(table: dict[str, Any], prefix: str) -> list[str]:
    simple = [
        f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None and not isinstance(v, dict)
    ]
    nested = [f"{k} = {_toml_value(v)}" for k, v in table.items() if isinstance(v, dict)]
    unset = [f"# {k} = (unset: library default)" for k, v in table.items() if v is None]
    return simple + nested + unset


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
