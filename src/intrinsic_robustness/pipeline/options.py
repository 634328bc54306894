"""What a config section's ``options`` table may hold: the keyword parameters of the library function its stage
calls (read from that function's signature and type hints), minus those the stage sets from the section's own
keys; and each attack's ``attack_options``, checked by building the attack. Failures are ``ValueError``s for
the config's validators, whose messages start with the key (a leading '.' continues the section's key).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from intrinsic_robustness.errors import UserInputError

# Parameters a stage sets itself (from the section's own keys); a section's ``options`` may name any other.
GENERATOR_SET = frozenset({"dataset", "out", "epochs", "batch_size", "lr", "seed", "device", "latent_dim", "size",
                           "force"})
CLASSIFIER_SET = frozenset({"train_data", "method", "arch", "eps", "epochs", "batch_size", "lr", "seed", "device",
                            "out", "force"})
EVALUATION_SET = frozenset({"classifier", "dataset", "generator", "threat", "attacks", "eps", "n", "batch_size",
                            "seed", "device", "out", "attack_options", "trust_code"})
INVERSION_SET = frozenset({"generator", "x", "y", "seed", "index"})
# Smallest allowed value of a numeric option (inclusive; 0 unless named); ``_POSITIVE`` ones must exceed 0.
_MINIMUM = {"width": 1, "hidden": 1, "max_batches": 1, "fidelity_per_class": 1, "eval_steps": 1, "steps": 1,
            "restarts": 1}
_POSITIVE = frozenset({"step_size", "eval_eps", "lr"})


def as_validation_error(check: Any, value: Any, key: str) -> Any:
    """``check(value)`` with a :class:`UserInputError` turned into a validation error naming ``key`` (keys below
    the validated one start with '.', and the section's own key is put before them)."""
    try:
        return check(value)
    except UserInputError as exc:
        raise ValueError(f"{key}: {exc}") from None


def check_options(options: dict[str, Any], function: Callable[..., Any], taken: frozenset[str], key: str) -> None:
    """Each option must be a parameter of ``function`` not set by the stage itself, of the parameter's type,
    and (numbers) finite and not below its minimum."""
    import inspect
    import math
    import typing

    from pydantic import TypeAdapter

    name = function.__name__
    params = inspect.signature(function).parameters
    allowed = sorted(p for p, v in params.items() if p not in taken and v.kind is not v.VAR_KEYWORD)
    hints = typing.get_type_hints(function)
    for option, value in options.items():
        if option in taken and option in params:
            raise ValueError(f"{key}.{option}: set by the section's own key {option!r}, not in options")
        if option not in allowed:
            raise ValueError(f"{key}.{option}: not an option of {name}; it takes {', '.join(allowed) or 'none'}")
        try:
            TypeAdapter(hints[option]).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"{key}.{option}={value!r}: expected {hints[option]}") from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            low = _MINIMUM.get(option, 0)
            if not math.isfinite(value) or value < low or (option in _POSITIVE and value <= 0):
                need = "> 0" if option in _POSITIVE else f">= {low}"
                raise ValueError(f"{key}.{option}={value!r}: must be a finite number {need}")


def check_attack_options(name: str, kwargs: Any) -> None:
    """``attack_options.NAME``: keyword arguments the attack's constructor takes, with values it accepts."""
    import inspect

    from intrinsic_robustness.attacks import ATTACKS

    key = f".attack_options.{name}"
    if not isinstance(kwargs, dict):
        raise ValueError(f"{key}: expected a table of keyword arguments")
    cls = ATTACKS.get(name)
    latent = ATTACKS.info(name)["threat"] == "in-distribution"
    params = list(inspect.signature(cls.__init__).parameters)[2 if latent else 1:]
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(f"{key}.{unknown[0]}: not an option of {ATTACKS.canonical(name)}; it takes "
                         f"{', '.join(params) or 'none'}")
    try:
        cls(None, **kwargs) if latent else cls(**kwargs)
    except (UserInputError, TypeError, ValueError) as exc:
        raise ValueError(f"{key}: {' '.join(str(exc).split())}") from None
    except Exception:  # noqa: BLE001, S110 - needs the real generator; its stage checks the rest
        pass
