"""What every Lipschitz estimator is: an object with its own options that turns anchors into per-anchor values.

``values(gen, anchors, label, radius, seed)`` returns one value per anchor of class ``label`` (an estimate
from below unless ``certified``) and the number of generator evaluations it spent; an estimator that can
be split inside a class also takes ``first=`` and says so through ``chunk_size()``. Options are constructor
arguments, checked there with one-line errors; ``parameters()`` is what a result file records of them.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from intrinsic_robustness.errors import UserInputError

if TYPE_CHECKING:
    import torch

# Defaults shared by the library, the pipeline config and the CLI (the paper's radius; 100 anchors per class).
DEFAULT_ANCHORS = 100
DEFAULT_RADIUS = 0.5


class Estimator:
    """Base class: set ``name``, ``label`` (and ``certified``), implement ``values`` and ``parameters``."""

    name: ClassVar[str] = "estimator"
    label: ClassVar[str] = "estimator"
    certified: ClassVar[bool] = False

    def values(self, gen: torch.nn.Module, anchors: torch.Tensor, label: int, radius: float,
               seed: int) -> tuple[torch.Tensor, int]:
        raise NotImplementedError

    def parameters(self) -> dict[str, Any]:
        return {}

    def radius_for(self, radius: float) -> float:
        """The radius this estimator's values hold for (the run's, unless the estimator has its own)."""
        return float(radius)

    def chunk_size(self) -> int | None:
        """Anchors one internal batch holds, for estimators whose ``values`` also takes ``first`` (the class
        index of ``anchors[0]``, which names each anchor's draws); several processes then split a class at
        multiples of it and get the single-process numbers. None (the default): split by whole classes."""
        return None

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The options this estimator takes (its constructor's keyword arguments)."""
        params = inspect.signature(cls.__init__).parameters
        return tuple(n for n in params if n != "self")


def positive_int(name: str, value: object, allow_zero: bool = False) -> int:
    """``value`` as an int, or a one-line error naming the option."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and int(value) == value
    if not ok or int(value) < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise UserInputError(f"{name}={value!r}: must be a {kind} integer")
    return int(value)
