"""Help texts that list registry contents, filled in from the registries when help is shown.

A flag's help names a registry as ``{estimators}``, ``{estimator_options}`` (each estimator's option names),
``{attacks}``, ``{methods}``, ``{architectures}``, ``{threats}`` or ``{generators}`` (named generators).
:class:`RegistryCommand` (``@app.command(..., cls=RegistryCommand)``) replaces each placeholder with the
registered names when ``--help`` is formatted, so the registries (and torch) load only then and a new
registration shows up without editing any help text.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


def _names(registry: Any) -> str:
    return ", ".join(registry.names())


def registry_choices() -> dict[str, str]:
    """Placeholder -> the registered names, comma-separated, in registration order."""
    from intrinsic_robustness.attacks import ATTACKS
    from intrinsic_robustness.generators.families import NAMED
    from intrinsic_robustness.lipschitz.registry import ESTIMATORS
    from intrinsic_robustness.models.architectures import ARCHITECTURES
    from intrinsic_robustness.threat import THREATS
    from intrinsic_robustness.training.objectives import METHODS

    attacks = "; ".join(f"{', '.join(ATTACKS.names(threat=t))} ({t})" for t in THREATS)
    options = "; ".join(f"{m}: {', '.join(ESTIMATORS.get(m).option_names()) or 'none'}" for m in ESTIMATORS)
    return {"estimators": _names(ESTIMATORS), "estimator_options": options, "attacks": attacks,
            "methods": _names(METHODS), "architectures": _names(ARCHITECTURES), "threats": " or ".join(THREATS),
            "generators": _names(NAMED)}


def fill_help(text: str | None, choices: dict[str, str]) -> str | None:
    """``text`` with each ``{placeholder}`` it holds replaced (other braces left alone)."""
    if not text:
        return text
    for key, names in choices.items():
        text = text.replace("{" + key + "}", names)
    return text


class RegistryCommand(TyperCommand):
    """A typer command whose option help may name registries (see the module docstring)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        if not getattr(self, "_filled", False):
            choices = registry_choices()
            for param in self.params:
                if isinstance(getattr(param, "help", None), str):  # options (arguments have no help)
                    param.help = fill_help(param.help, choices)
            self.help = fill_help(self.help, choices)
            self._filled = True
        super().format_help(ctx, formatter)
