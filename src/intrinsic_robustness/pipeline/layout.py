"""The run directory's paths now live in :mod:`intrinsic_robustness.layout` (below both ``pipeline`` and
``report``); this name is kept so ``intrinsic_robustness.pipeline.layout`` imports keep working."""

from intrinsic_robustness.layout import COMPARE_PREFIX, RUN_FORMAT, RunLayout

__all__ = ["COMPARE_PREFIX", "RUN_FORMAT", "RunLayout"]
