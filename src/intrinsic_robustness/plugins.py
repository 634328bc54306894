"""Load user code named as ``package.module:factory`` (a factory returning an nn.Module)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from intrinsic_robustness.errors import UserInputError


def is_factory_spec(spec: str) -> bool:
    """True for ``package.module:factory`` (a colon, a dotted module path, an identifier after it)."""
    if ":" not in spec or spec.count(":") != 1:
        return False
    module, attr = spec.split(":")
    return bool(module) and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))


def resolve_factory(spec: str, what: str = "factory") -> Callable[..., Any]:
    """Import ``module:attr`` and return the callable, with one-line errors for each failure."""
    if not is_factory_spec(spec):
        raise UserInputError(f"{what} spec {spec!r}: expected 'package.module:factory'")
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserInputError(f"{what} spec {spec!r}: cannot import module {module_name!r} ({exc}); "
                             "check the name and that it is on PYTHONPATH") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserInputError(f"{what} spec {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def build_from_factory(spec: str, what: str = "factory", **kwargs: Any) -> Any:
    """Call the factory named by ``spec`` with ``kwargs``."""
    factory = resolve_factory(spec, what)
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise UserInputError(f"{what} spec {spec!r}: calling the factory failed ({exc})") from None
