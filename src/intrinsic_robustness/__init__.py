"""intrinsic-robustness: how robust could any classifier be on a generated image distribution?

Importing the package is cheap (no torch, no matplotlib); submodules load on first use.
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


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'intrinsic_robustness' has no attribute {name!r}")
