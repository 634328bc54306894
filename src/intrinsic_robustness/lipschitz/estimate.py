"""``estimate_lipschitz``: shared anchors, input checks, eval-mode handling, and the per-class loop."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.protocol import generator_device
from intrinsic_robustness.lipschitz.gradient import FLOOR_FRACTION, gradient_values
from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult
from intrinsic_robustness.lipschitz.sampling import sampling_values
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.runtime import derive_seed, make_generator, resolve_device

METHODS = ("sampling", "gradient")
EVALUATION_RULE = "per latent: forward decode = 1, jvp = 1, vjp/backward = 1"


def class_anchors(gen: torch.nn.Module, label: int, n: int, seed: int) -> torch.Tensor:
    """Class ``label``'s anchors z ~ N(0, I), from derive_seed(seed, "anchors", label), drawn on CPU.

    Both methods use these, so with one seed they are compared on the same anchors on any device.
    """
    rng = make_generator(derive_seed(seed, "anchors", label))
    return gen.sample_latent(n, generator=rng, device="cpu")  # type: ignore[operator]


def estimate_lipschitz(
    gen: torch.nn.Module, method: str = "sampling", anchors_per_class: int = 100, radius: float = 0.5,
    neighbors: int = 2000, seed: int = 0, device: str | torch.device = "cpu",
    classes: Sequence[int] | None = None, batch_size: int = 1024, power_iters: int = 10,
    ascent_steps: int = 12, restarts: int = 2,
) -> LipschitzResult:
    """Per-class local Lipschitz estimates of decode(., y) at radius ``radius`` (an estimate from below).

    ``sampling`` is the paper's estimator (``neighbors`` uniform neighbours per anchor); ``gradient`` uses
    Jacobian power iteration (``power_iters``) and quotient ascent (``ascent_steps`` from the top direction
    and ``restarts`` random starts). ``batch_size`` bounds latents per decode call and does not change
    results. The generator is moved to ``device`` and run in eval mode; its mode and parameter
    ``requires_grad`` flags are restored afterwards.
    """
    _check_args(gen, method, anchors_per_class, radius, neighbors, batch_size, power_iters, ascent_steps,
                restarts)
    labels = _check_classes(classes, int(gen.num_classes))  # type: ignore[arg-type]
    dev = resolve_device(device)
    if generator_device(gen) != dev:
        gen.to(dev)
    started = time.perf_counter()
    per_class, evaluations = [], 0
    with frozen(gen):
        for label in labels:
            z = class_anchors(gen, label, anchors_per_class, seed).to(dev)
            if method == "sampling":
                values, used = sampling_values(gen, z, label, radius, neighbors, seed, batch_size)
            else:
                values, used = gradient_values(gen, z, label, radius, seed, batch_size, power_iters,
                                               ascent_steps, restarts)
            per_class.append(ClassLipschitz.from_values(label, values))
            evaluations += used
    parameters = {"anchors_per_class": anchors_per_class, "seed": seed, "classes": labels,
                  "num_classes": int(gen.num_classes), "latent_dim": int(gen.latent_dim),  # type: ignore[arg-type]
                  "evaluation_rule": EVALUATION_RULE}
    if method == "sampling":
        parameters["neighbors"] = neighbors
    else:
        parameters.update(power_iters=power_iters, ascent_steps=ascent_steps, restarts=restarts,
                          floor_fraction=FLOOR_FRACTION)
    return LipschitzResult(method=method, radius=float(radius), parameters=parameters,
                           per_class=tuple(per_class), generator_evaluations=int(evaluations),
                           seconds=time.perf_counter() - started)


def _check_args(gen: object, method: str, anchors_per_class: int, radius: float, neighbors: int,
                batch_size: int, power_iters: int, ascent_steps: int, restarts: int) -> None:
    """One-line errors naming the bad argument and the fix."""
    for attr in ("latent_dim", "num_classes", "decode", "sample_latent"):
        if not hasattr(gen, attr):
            raise UserInputError(f"generator has no '{attr}'; pass a conditional generator "
                                 "(latent_dim, num_classes, decode(z, y), sample_latent)")
    if method not in METHODS:
        raise UserInputError(f"--method {method!r}: choose 'sampling' or 'gradient'")
    if not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
        raise UserInputError(f"--radius {radius!r}: must be a positive finite number (the paper uses 0.5)")
    counts = {"--anchors-per-class": anchors_per_class, "--neighbors": neighbors, "--batch-size": batch_size,
              "--power-iters": power_iters}
    for flag, value in counts.items():
        if int(value) != value or value < 1:
            raise UserInputError(f"{flag} {value!r}: must be a positive integer")
    for flag, value in {"--ascent-steps": ascent_steps, "--restarts": restarts}.items():
        if int(value) != value or value < 0:
            raise UserInputError(f"{flag} {value!r}: must be a non-negative integer")


def _check_classes(classes: Sequence[int] | None, num_classes: int) -> list[int]:
    if classes is None:
        return list(range(num_classes))
    labels = [int(c) for c in classes]
    bad = [c for c in labels if not 0 <= c < num_classes]
    if bad or not labels or len(set(labels)) != len(labels):
        raise UserInputError(f"classes {list(classes)}: need distinct class indices in 0..{num_classes - 1}")
    return labels
