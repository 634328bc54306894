"""Orchestration: one config file runs the whole study, resumably, into one run directory.

``config`` (the validated TOML), ``layout`` (every path of a run directory), ``engine`` (stages, keys, skip
and resume, the run lock) and ``stages`` (each stage a thin call into the domain packages). The domain
packages never import from here. Importing this package is cheap; names load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "PipelineConfig": "intrinsic_robustness.pipeline.config",
    "load_config": "intrinsic_robustness.pipeline.config",
    "RunLayout": "intrinsic_robustness.layout",
    "run_pipeline": "intrinsic_robustness.pipeline.stages",
    "build_stages": "intrinsic_robustness.pipeline.stages",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'intrinsic_robustness.pipeline' has no attribute {name!r}")
