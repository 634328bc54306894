"""Why a stage runs again: what changed since its last record (its config keys, an upstream stage's outputs, a
file it reads), in one short phrase for the run's output, ``meta.json`` and the report."""

from __future__ import annotations

from typing import Any

SHOWN = 3  # config keys named at most; the rest are counted


def why_redo(previous: dict[str, Any] | None, config: Any, inputs: dict[str, Any], key: str, forced: bool) -> str:
    """``previous``: the stage's last record (None: never ran); ``config``/``inputs``/``key``: what it has now."""
    if forced:
        return "forced (--force)"
    if previous is None:
        return "first run"
    if previous.get("key") == key:
        return "resumed after an interruption" if previous.get("status") == "running" else "its outputs went missing"
    reasons = []
    changed = _changed_keys(previous.get("config"), config)
    if changed:
        shown = ", ".join(changed[:SHOWN]) + (f" and {len(changed) - SHOWN} more" if len(changed) > SHOWN else "")
        reasons.append(f"config changed: {shown}")
    old_inputs = previous.get("inputs") or {}
    for name in sorted(set(inputs) | set(old_inputs)):
        if inputs.get(name) != old_inputs.get(name):
            label = name[len("file:"):] if name.startswith("file:") else f"stage {name}"
            reasons.append(f"{'file' if name.startswith('file:') else 'input'} {label} changed")
    return "; ".join(reasons) or "its key changed (an older version of irob recorded it)"


def _changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ (``epochs: 1 -> 2`` for scalars, the key alone for tables and lists)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            out += _changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    if old == new:
        return []
    name = prefix.rstrip(".") or "config"
    scalar = (int, float, str, bool, type(None))
    if isinstance(old, scalar) and isinstance(new, scalar):
        return [f"{name} {_short(old)} -> {_short(new)}"]
    return [name]


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."
