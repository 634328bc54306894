"""Load user code named as ``package.module:factory`` (a factory returning an nn.Module), and the one gate that
keeps files from running code.

A spec typed by the user (a command-line flag, an argument of a library call) is the user's own choice. A spec
read from a file (a saved generator's ``generator.json``, a classifier's ``config.json``, a dataset manifest, a
pipeline config) is not: importing it would run whatever the file names, so :func:`require_trust` refuses it
unless the caller passed ``trust_code=True`` (``--trust-code`` on the command line).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from intrinsic_robustness.errors import UserInputError

TRUST_HINT = "Pass --trust-code (trust_code=True) only if you trust this file"


def is_factory_spec(spec: object) -> bool:
    """True for ``package.module:factory`` (a colon, a dotted module path, an identifier after it)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        return False
    module, attr = spec.split(":")
    return bool(module) and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))


class UntrustedCode(UserInputError):
    """A file names code and the caller did not pass ``trust_code=True``."""


def require_trust(source: str, spec: str, trust_code: bool) -> None:
    """Refuse, in one line, to run the code ``spec`` that the file ``source`` names, unless ``trust_code``."""
    if not trust_code:
        raise UntrustedCode(f"{source}: names code {spec!r}; loading it would run that code. {TRUST_HINT}")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    except Exception as exc:  # noqa: BLE001 - importing user code may raise anything
        raise UserInputError(f"{what} spec {spec!r}: importing module {module_name!r} failed "
                             f"({_one_line(exc)})") from None
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise UserInputError(f"{what} spec {spec!r}: module {module_name!r} has no callable {attr!r}")
    return factory


def call_factory(spec: str, factory: Callable[..., Any], what: str = "factory", **kwargs: Any) -> Any:
    """``factory(**kwargs)``; any exception it raises becomes one line naming the spec and the exception."""
    try:
        return factory(**kwargs)
    except UserInputError as exc:
        raise UserInputError(f"{what} spec {spec!r}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        raise UserInputError(f"{what} spec {spec!r}: the factory raised {_one_line(exc)}") from None


def build_from_factory(spec: str, what: str = "factory", **kwargs: Any) -> Any:
    """Call the factory named by ``spec`` with ``kwargs`` (a spec the caller chose, or one it trusts)."""
    return call_factory(spec, resolve_factory(spec, what), what, **kwargs)
