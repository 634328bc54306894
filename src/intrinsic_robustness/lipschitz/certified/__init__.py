"""Certified (provable) upper bounds on the Lipschitz constants of conditional generators.

``certified_global(gen)`` bounds sup over all z of ||J(z)||_2 per class; ``certified_local(gen, anchors,
label, radius)`` bounds, per anchor z, sup ||G(z') - G(z)|| / ||z' - z|| over the ball ||z' - z|| <= radius.
Both work on generators built from supported layers (see :data:`SUPPORTED`) and refuse others in one line.
"""

from intrinsic_robustness.lipschitz.certified.global_bound import certified_global
from intrinsic_robustness.lipschitz.certified.graph import SUPPORTED, Chain, extract_chain
from intrinsic_robustness.lipschitz.certified.local_bound import (
    LocalSettings,
    certified_local,
    certified_local_curve,
)

__all__ = [
    "SUPPORTED",
    "Chain",
    "LocalSettings",
    "certified_global",
    "certified_local",
    "certified_local_curve",
    "extract_chain",
]
