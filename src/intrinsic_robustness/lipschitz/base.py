"""What every Lipschitz estimator is: an object with its own options that turns anchors into per-anchor values.

``values(gen, anchors, label, radius, seed)`` returns one value per anchor of class ``label`` (an estimate
from below unless ``certified``) and the number of generator evaluations it spent; an estimator that can
be split inside a class also takes ``first=`` and says so through ``chunk_size()``. Options are constructor
arguments, checked there with one-line errors; ``parameters()`` is what a result file records of them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from intrinsic_robustness.errors import UserInputError

if TYPE_CHECKING:
    import torch

# Defaults shared by the library, the pipeline config and the CLI (the paper's radius; 100 anchors per class).
DEFAULT_ANCHORS = 100
DEFAULT_RADIUS = 0.5
# The default method everywhere: the gradient estimate. Every estimator short of a certified one is an estimate
# from below, and a too-small L makes the "upper bound" too small; gradient ascent finds the largest (truest)
# values for the cost (sampling, the paper's method, is far lower in high latent dimension; see docs/lipschitz.md).
DEFAULT_METHOD = "gradient"


class Estimator:
    """Base class: set ``name``, ``label`` (and the facts below), implement ``values`` and ``parameters``.

    The facts are what the registry records of an estimator (``ESTIMATORS.info(name)``) and what config,
    bound and report read: no other module keys them by name.
    """

    name: ClassVar[str] = "estimator"
    label: ClassVar[str] = "estimator"
    certified: ClassVar[bool] = False  # per-anchor values are upper bounds, not estimates from below
    global_bound: ClassVar[bool] = False  # one value per class valid for every latent at any radius: no slack
    scale: ClassVar[float] = 1.0  # its values over the [0, 1]-output values eps uses (the paper's code: 2)
    bracket: ClassVar[int | None] = None  # place in the report's bracket (lower: expected smaller values)
    reference: ClassVar[bool] = False  # the per-anchor yardstick the report compares other methods with

    @classmethod
    def facts(cls) -> dict[str, Any]:
        """What its registration records: label, certified, global_bound, scale, bracket, reference."""
        return {"label": cls.label, "certified": cls.certified, "global_bound": cls.global_bound,
                "scale": float(cls.scale), "bracket": cls.bracket, "reference": cls.reference}

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

    @classmethod
    def parse_options(cls, pairs: Sequence[str], flag: str = "--option") -> dict[str, Any]:
        """``KEY=VALUE`` strings as this estimator's options, each value read as its constructor parameter's
        type (``none`` for an optional one); an unknown key or a value of the wrong type is a one-line error."""
        import typing

        from pydantic import TypeAdapter, ValidationError

        hints = typing.get_type_hints(cls.__init__)
        takes = cls.option_names()
        out: dict[str, Any] = {}
        for pair in pairs:
            key, sep, text = str(pair).partition("=")
            key = key.strip().replace("-", "_")
            if not sep or not key:
                raise UserInputError(f"{flag} {pair!r}: write KEY=VALUE, e.g. {flag} {(takes or ('key',))[0]}=10")
            if key not in takes:
                raise UserInputError(f"{flag} {key}: not an option of lipschitz method {cls.name}; it takes "
                                     f"{', '.join(takes) or 'no options'}")
            if key in out:
                raise UserInputError(f"{flag} {key}: given twice; give each option once")
            hint = hints.get(key, Any)
            try:
                none = text.strip().lower() in ("none", "null") and TypeAdapter(hint).validate_python(None) is None
                out[key] = None if none else TypeAdapter(hint).validate_strings(text.strip())
            except ValidationError:
                raise UserInputError(f"{flag} {key}={text!r}: expected {_type_name(hint)} "
                                     f"(an option of lipschitz method {cls.name})") from None
        return out


def _type_name(hint: Any) -> str:
    """A readable name of a type hint (``int | None`` -> 'int or none')."""
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    names = [getattr(a, "__name__", str(a)) for a in args]
    return " or ".join(names) + (" or none" if type(None) in typing.get_args(hint) else "")


def positive_int(name: str, value: object, allow_zero: bool = False) -> int:
    """``value`` as an int, or a one-line error naming the option."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and int(value) == value
    if not ok or int(value) < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise UserInputError(f"{name}={value!r}: must be a {kind} integer")
    return int(value)
