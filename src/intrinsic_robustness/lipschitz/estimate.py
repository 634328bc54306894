"""``estimate_lipschitz``: shared anchors, input checks, eval-mode handling, and the per-class loop.

The method is any registered estimator (``ESTIMATORS`` in :mod:`intrinsic_robustness.lipschitz`) or an
:class:`~intrinsic_robustness.lipschitz.base.Estimator` object; options go to that estimator only. Under a
torchrun job of several processes the anchors are split across ranks (see :func:`work_units`) and every
rank returns the single-process result.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from intrinsic_robustness.distributed import collect, is_distributed
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.protocol import ATTRIBUTES, CONTRACT, draw_latents
from intrinsic_robustness.lipschitz.base import DEFAULT_ANCHORS, DEFAULT_METHOD, DEFAULT_RADIUS, Estimator, positive_int
from intrinsic_robustness.lipschitz.result import CERTIFIED_NOTE, NOTE, ClassLipschitz, LipschitzResult
from intrinsic_robustness.modes import frozen
from intrinsic_robustness.runtime import DEFAULT_DEVICE, derive_seed, make_generator, module_device, resolve_device

EVALUATION_RULE = "per latent: forward decode = 1, jvp = 1, vjp/backward = 1"


def class_anchors(gen: torch.nn.Module, label: int, n: int, seed: int) -> torch.Tensor:
    """Class ``label``'s anchors z ~ N(0, I), from derive_seed(seed, "anchors", label), drawn on CPU.

    Every method uses these, so with one seed they are compared on the same anchors on any device.
    """
    return draw_latents(gen, n, make_generator(derive_seed(seed, "anchors", label)))


def make_estimator(method: str | Estimator, **options: Any) -> Estimator:
    """The registered estimator ``method`` built with ``options`` (unknown options: a one-line error)."""
    from intrinsic_robustness.lipschitz import ESTIMATORS

    if isinstance(method, Estimator):
        if options:
            raise UserInputError(f"options {sorted(options)}: pass them to the estimator object, not both")
        return method
    cls = ESTIMATORS.get(method)
    unknown = sorted(set(options) - set(cls.option_names()))
    if unknown:
        raise UserInputError(f"lipschitz method {cls.name}: unknown option(s) {', '.join(unknown)}; it takes "
                             f"{', '.join(cls.option_names()) or 'no options'}")
    return cls(**options)


def merge_options(options: Mapping[str, Any] | None, flat: Mapping[str, Any]) -> dict[str, Any]:
    """An estimator's options from its own table and from loose keywords; a key given in both is an error."""
    both = sorted(set(options or {}) & set(flat))
    if both:
        raise UserInputError(f"estimator option(s) {', '.join(both)} given twice (as options and as keywords)")
    return {**flat, **dict(options or {})}


def estimate_lipschitz(gen: torch.nn.Module, method: str | Estimator = DEFAULT_METHOD,
                       anchors_per_class: int = DEFAULT_ANCHORS, radius: float = DEFAULT_RADIUS, seed: int = 0,
                       device: str | torch.device = DEFAULT_DEVICE, classes: Sequence[int] | None = None,
                       options: Mapping[str, Any] | None = None, **flat: Any) -> LipschitzResult:
    """Per-class local Lipschitz values of decode(., y) at radius ``radius`` with one estimator.

    ``options`` are the estimator's own, in their own namespace (sampling: ``neighbors``, ``batch_size``;
    gradient: ``power_iters``, ``ascent_steps``, ``restarts``, ``batch_size``; certified-local: its own
    ``radius``, ...; see each class); ``radius`` here is always the run's. Estimator options given as extra
    keywords (``flat``) still work where they do not collide with these arguments. The generator is moved to
    ``device`` and run in eval mode; its mode and parameter ``requires_grad`` flags are restored afterwards.
    """
    _check_generator_like(gen)
    estimator = make_estimator(method, **merge_options(options, flat))
    if not (isinstance(radius, int | float) and math.isfinite(radius) and radius > 0):
        raise UserInputError(f"radius={radius!r}: must be a positive finite number (the paper uses 0.5)")
    anchors_per_class = positive_int("anchors_per_class", anchors_per_class)
    radius = estimator.radius_for(radius)
    labels = _check_classes(classes, int(gen.num_classes))  # type: ignore[arg-type]
    dev = resolve_device(device)
    if module_device(gen) != dev:
        gen.to(dev)
    started = time.perf_counter()
    with frozen(gen):
        if is_distributed():
            per_class, evaluations = _sharded(gen, estimator, labels, anchors_per_class, float(radius), seed, dev)
        else:
            per_class, evaluations = [], 0
            for label in labels:
                z = class_anchors(gen, label, anchors_per_class, seed).to(dev)
                values, used = estimator.values(gen, z, label, float(radius), seed)
                per_class.append(ClassLipschitz.from_values(label, values))
                evaluations += used
    parameters = {"anchors_per_class": anchors_per_class, "seed": seed, "classes": labels,
                  "num_classes": int(gen.num_classes), "latent_dim": int(gen.latent_dim),  # type: ignore[arg-type]
                  "evaluation_rule": EVALUATION_RULE, **estimator.parameters()}
    return LipschitzResult(method=estimator.name, radius=float(radius), parameters=parameters,
                           per_class=tuple(per_class), generator_evaluations=int(evaluations),
                           seconds=time.perf_counter() - started, certified=estimator.certified,
                           note=CERTIFIED_NOTE if estimator.certified else NOTE,
                           global_bound=bool(estimator.global_bound))


def work_units(labels: Sequence[int], n: int, chunk: int | None) -> list[tuple[int, int, int]]:
    """(class, first, stop) pieces of the anchors, in class order: the estimator's own chunks, or whole classes."""
    step = n if chunk is None else max(1, int(chunk))
    return [(label, lo, min(n, lo + step)) for label in labels for lo in range(0, n, step)]


def _sharded(gen: torch.nn.Module, estimator: Estimator, labels: list[int], n: int, radius: float, seed: int,
             dev: torch.device) -> tuple[list[ClassLipschitz], int]:
    """The per-class loop split over a torchrun job: each rank takes a block of units, every rank gets all.

    A unit is one of the estimator's internal chunks, so each rank repeats exactly the single-process
    computation of its chunks (same anchors, same draws named by class index, same batch shapes).
    """
    units = work_units(labels, n, estimator.chunk_size())

    def compute(block: range) -> list[tuple[torch.Tensor, int]]:
        out: list[tuple[torch.Tensor, int]] = []
        for label, lo, hi, members in _runs([units[i] for i in block]):
            z = class_anchors(gen, label, n, seed)[lo:hi].to(dev)
            if estimator.chunk_size() is None:
                values, used = estimator.values(gen, z, label, radius, seed)
            else:
                values, used = estimator.values(gen, z, label, radius, seed, first=lo)  # type: ignore[call-arg]
            values = values.detach().cpu()
            for k, (_, a, b) in enumerate(members):  # the run's evaluation count rides on its last unit
                out.append((values[a - lo:b - lo], used if k == len(members) - 1 else 0))
        return out

    pieces = collect(len(units), compute)
    per_class, evaluations = [], 0
    for label in labels:
        mine = [p for u, p in zip(units, pieces, strict=True) if u[0] == label]
        per_class.append(ClassLipschitz.from_values(label, torch.cat([v for v, _ in mine])))
        evaluations += sum(used for _, used in mine)
    return per_class, evaluations


def _runs(units: list[tuple[int, int, int]]) -> list[tuple[int, int, int, list[tuple[int, int, int]]]]:
    """Consecutive units of one class merged into (class, first, stop, members): one estimator call each."""
    runs: list[tuple[int, int, int, list[tuple[int, int, int]]]] = []
    for unit in units:
        if runs and runs[-1][0] == unit[0] and runs[-1][2] == unit[1]:
            label, lo, _, members = runs[-1]
            runs[-1] = (label, lo, unit[2], [*members, unit])
        else:
            runs.append((unit[0], unit[1], unit[2], [unit]))
    return runs


def _check_generator_like(gen: object) -> None:
    missing = [a for a in ATTRIBUTES if not hasattr(gen, a)]
    if missing:
        raise UserInputError(f"generator has no {', '.join(missing)}; a generator needs {CONTRACT}")


def _check_classes(classes: Sequence[int] | None, num_classes: int) -> list[int]:
    if classes is None:
        return list(range(num_classes))
    labels = [int(c) for c in classes]
    bad = [c for c in labels if not 0 <= c < num_classes]
    if bad or not labels or len(set(labels)) != len(labels):
        raise UserInputError(f"classes {list(classes)}: need distinct class indices in 0..{num_classes - 1}")
    return labels
