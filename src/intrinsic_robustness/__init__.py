"""intrinsic-robustness: how robust could any classifier be on a generated image distribution?

``import intrinsic_robustness as irob`` is cheap (no torch, no matplotlib): ``irob.api`` (one function per
``irob`` command) and the other names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "intrinsic_robustness_bound": ("intrinsic_robustness.bound", "intrinsic_robustness"),
    "classifier_bound": ("intrinsic_robustness.bound", "classifier_bound"),
    "UserInputError": ("intrinsic_robustness.errors", "UserInputError"),
}
_SUBMODULES = ("api",)

__all__ = ["__version__", *_SUBMODULES, *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"intrinsic_robustness.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'intrinsic_robustness' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
