"""The Lipschitz estimate as data: per-class summaries, JSON round trip, and the inputs a bound needs.

Every number here is an estimate from below of the local Lipschitz constant: the largest difference
quotient (or Jacobian norm) the estimator happened to find, never a certificate.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import check_format, read_json, write_json

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

NOTE = ("estimate from below of the local Lipschitz constant of decode(., y) on the [0,1] pixel scale: "
        "the largest quotient ||G(z',y)-G(z,y)||/||z'-z|| found within the radius around each anchor; "
        "the true constant can be larger, and percentiles over anchors are sample estimates")
CERTIFIED_NOTE = ("certified upper bound on the Lipschitz constant of decode(., y) on the [0,1] pixel scale: at each "
                  "anchor, no quotient ||G(z',y)-G(z,y)||/||z'-z|| within the radius exceeds it (global: for any "
                  "pair of latents); percentiles over anchors are still sample statistics, so a bound built on them "
                  "is a certificate only with a confidence level for the slack (--confidence)")

FORMAT = "irob-lipschitz/1"  # files before the key existed have none and are read as this

# Fraction of the latent measure a percentile leaves out: the slack the bound subtracts per class.
PERCENTILE_SLACK = {"p95": 0.05, "p99": 0.01, "p999": 0.001, "max": 0.0}
PERCENTILES = ("p95", "p99", "p999", "max", "mean")


@dataclass(frozen=True)
class ClassLipschitz:
    """Per-class summary of the per-anchor estimates (``label`` is the class index, JSON key ``class``)."""

    label: int
    p95: float
    p99: float
    p999: float
    max: float
    mean: float
    values: tuple[float, ...]

    @classmethod
    def from_values(cls, label: int, values: torch.Tensor) -> ClassLipschitz:
        """Summarise per-anchor values; percentiles interpolate linearly between order statistics."""
        import torch

        v = values.detach().double().cpu().flatten()
        if v.numel() == 0:
            raise ValueError("no per-anchor values to summarise")
        if torch.isnan(v).any():  # the generator gave NaN images near these anchors: no estimate, say where
            raise UserInputError(f"lipschitz class {label}: {int(torch.isnan(v).sum())} of {v.numel()} anchors gave "
                                 "NaN quotients (the generator's decode returned NaN or inf near them); a generator "
                                 "must give finite images for every latent")
        q = torch.quantile(v, torch.tensor([0.95, 0.99, 0.999], dtype=torch.float64))
        return cls(label=int(label), p95=float(q[0]), p99=float(q[1]), p999=float(q[2]),
                   max=float(v.max()), mean=float(v.mean()), values=tuple(float(x) for x in v))

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.label, "p95": self.p95, "p99": self.p99, "p999": self.p999,
                "max": self.max, "mean": self.mean, "values": list(self.values)}


@dataclass(frozen=True)
class LipschitzResult:
    """One estimation run: method, radius, parameters, per-class summaries, cost and a plain caveat."""

    method: str
    radius: float
    parameters: dict[str, Any]
    per_class: tuple[ClassLipschitz, ...]
    generator_evaluations: int
    seconds: float
    note: str = field(default=NOTE)
    certified: bool = False
    global_bound: bool | None = None  # the estimator's registered fact, recorded (None: look it up by method)

    def lipschitz(self, percentile: str = "p99") -> list[float]:
        """The chosen summary for each class, in the order of ``per_class``."""
        if percentile not in PERCENTILES:
            raise UserInputError(f"percentile {percentile!r}: choose one of {', '.join(PERCENTILES)}")
        return [float(getattr(c, percentile)) for c in self.per_class]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "method": self.method, "radius": self.radius,
                "per_class": [c.to_dict() for c in self.per_class],
                "generator_evaluations": int(self.generator_evaluations), "seconds": self.seconds,
                "parameters": dict(self.parameters), "note": self.note, "certified": self.certified,
                **({} if self.global_bound is None else {"global_bound": self.global_bound})}

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON form atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, source: str = "lipschitz result") -> LipschitzResult:
        """Rebuild from the JSON form, with one-line errors naming what is missing."""
        if not isinstance(data, dict):
            raise UserInputError(f"{source}: expected a JSON object written by 'irob lipschitz'")
        check_format(data, source, FORMAT, required=False)
        missing = [k for k in ("method", "radius", "per_class", "generator_evaluations") if k not in data]
        if missing:
            raise UserInputError(f"{source}: missing key(s) {', '.join(missing)}; "
                                 "write the file with 'irob lipschitz --out FILE.json'")
        try:
            per_class = tuple(_class_from_dict(c) for c in data["per_class"])
            return cls(method=str(data["method"]), radius=float(data["radius"]),
                       parameters=dict(data.get("parameters") or {}), per_class=per_class,
                       generator_evaluations=int(data["generator_evaluations"]),
                       seconds=float(data.get("seconds") or 0.0), note=str(data.get("note") or NOTE),
                       certified=bool(data.get("certified", False)),
                       global_bound=None if data.get("global_bound") is None else bool(data["global_bound"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserInputError(f"{source}: malformed per_class entry ({exc}); "
                                 "regenerate it with 'irob lipschitz'") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LipschitzResult:
        return cls.from_dict(read_json(path), source=str(path))


def _class_from_dict(entry: dict[str, Any]) -> ClassLipschitz:
    def num(key: str) -> float:
        value = entry[key]
        return math.inf if value is None else float(value)

    return ClassLipschitz(label=int(entry["class"]), p95=num("p95"), p99=num("p99"), p999=num("p999"),
                          max=num("max"), mean=num("mean"),
                          values=tuple(math.inf if v is None else float(v) for v in entry.get("values", [])))


@dataclass(frozen=True)
class BoundBasis:
    """What a bound rests on: per-class L and slack, the radius, and how much each can be trusted."""

    method: str
    percentile: str
    lipschitz: list[float]
    slack: list[float]
    radius: float
    certified: bool  # per-anchor values are upper bounds (certified methods), not estimates from below
    confidence: float | None  # joint confidence of the slacks (Clopper-Pearson, Bonferroni over classes)
    exceeding: list[int]  # per class, anchors whose value is above the chosen L
    anchors: list[int]  # per class, anchors the values come from
    global_constant: bool = False  # the method's registered ``global_bound`` (one value for every latent)

    @property
    def global_bound(self) -> bool:
        """A certified global constant: it holds for every latent, so no slack and no confidence are needed."""
        return self.certified and self.global_constant

    @property
    def certificate(self) -> bool:
        """Certified per-anchor values with a confidence-backed slack, or a certified global constant."""
        return self.certified and (self.confidence is not None or self.global_bound)

    def sample_exceedance(self) -> list[float]:
        """Per class, the fraction of anchors above the chosen L: the exceedance the sample actually shows."""
        return [k / n if n else 0.0 for k, n in zip(self.exceeding, self.anchors, strict=True)]

    def order_statistic(self) -> str:
        """Which order statistic the percentile is for these sample sizes (a p99 of 30 anchors is ~p96.7)."""
        worst = max(range(len(self.anchors)), key=lambda i: self.sample_exceedance()[i])
        k, n = self.exceeding[worst], self.anchors[worst]
        return (f"{self.percentile} of {n} anchors lies at or above order statistic {n - k} of {n}: {k} of {n} "
                f"above it, empirically a p{100 * (1 - k / n):.3g}" if n else f"{self.percentile} of no anchors")

    def describe(self) -> str:
        """One line naming the L, the condition on the slack and what kind of number the bound is."""
        if self.global_bound:
            return f"L = {self.method} (a provable global constant, slack 0): a deterministic certificate"
        kind = "certified" if self.certified else "estimated from below"
        if self.confidence is None:
            how = f"nominal slack {self.slack[0]:g} (assumed, no confidence)"
        else:
            how = f"Clopper-Pearson slack at joint confidence {self.confidence:g}"
        verdict = "a high-probability certificate" if self.certificate else "an estimate, not a certificate"
        return (f"L = {self.method} {self.percentile} ({kind}, {min(self.anchors)}+ anchors per class; "
                f"{self.order_statistic()}), radius {self.radius:g}, {how}: {verdict}")


def bound_basis(result_or_path: LipschitzResult | str | os.PathLike[str], percentile: str = "p99",
                confidence: float | None = None) -> BoundBasis:
    """Per-class L, slack and radius for the bound, with what they rest on.

    Without ``confidence`` the slack is the measure the percentile leaves out by assumption (p95 -> 0.05,
    p99 -> 0.01, p999 -> 0.001, max -> 0). With ``confidence`` = 1 - beta it is, per class, the Clopper-Pearson
    upper limit at level 1 - beta / K on the fraction of latents whose local constant exceeds L, from the k of
    n anchors that do; the K classes then hold together with probability >= 1 - beta (union bound).
    ``mean`` is refused: an average says nothing about the measure of the set where it holds.
    """
    result = _as_result(result_or_path)
    if percentile == "mean":
        raise UserInputError("--percentile mean: a mean Lipschitz value implies no coverage of the latent "
                             "space, so no slack can be stated; use p95, p99, p999 or max")
    if percentile not in PERCENTILE_SLACK:
        raise UserInputError(f"--percentile {percentile!r}: choose one of {', '.join(PERCENTILE_SLACK)}")
    labels = [c.label for c in result.per_class]
    expected = int(result.parameters.get("num_classes", len(labels)))
    if labels != list(range(expected)):
        raise UserInputError(f"lipschitz file covers classes {labels}; the bound needs every class "
                             "0..K-1 in order: rerun 'irob lipschitz' without restricting classes")
    if confidence is not None and not (isinstance(confidence, int | float) and 0 < confidence < 1):
        raise UserInputError(f"--confidence {confidence!r}: must be strictly between 0 and 1, e.g. 0.95")
    lipschitz = result.lipschitz(percentile)
    values = [list(c.values) for c in result.per_class]
    exceeding = [sum(v > lip for v in vals) for vals, lip in zip(values, lipschitz, strict=True)]
    global_constant = result.certified and _is_global(result)
    if global_constant:
        slack = [0.0] * len(lipschitz)
    elif confidence is None:
        slack = [PERCENTILE_SLACK[percentile]] * len(lipschitz)
        _warn_unsupported(percentile, slack[0], exceeding, [len(v) for v in values])
    else:
        from intrinsic_robustness.lipschitz.confidence import clopper_pearson_upper

        per_class = 1.0 - (1.0 - float(confidence)) / len(lipschitz)
        slack = [clopper_pearson_upper(int(k), len(v), per_class) for k, v in zip(exceeding, values, strict=True)]
    return BoundBasis(result.method, percentile, lipschitz, slack, float(result.radius), result.certified,
                      None if confidence is None else float(confidence), exceeding, [len(v) for v in values],
                      global_constant)


def _is_global(result: LipschitzResult) -> bool:
    """The result's recorded ``global_bound``, else (older files) its method's registered fact."""
    if result.global_bound is not None:
        return result.global_bound
    from intrinsic_robustness.lipschitz.registry import estimator_facts

    return bool(estimator_facts(result.method)["global_bound"])


def _warn_unsupported(percentile: str, nominal: float, exceeding: list[int], anchors: list[int]) -> None:
    """Warn when the nominal slack is below what the sample supports (too few anchors, or more of them above L)."""
    shown = max(k / n for k, n in zip(exceeding, anchors, strict=True) if n)
    fewest = min(anchors)
    if nominal > 0 and (fewest * nominal < 1 or shown > nominal):
        log.warning("%s from %d anchors per class: the sample shows %.3g of anchors above L, its nominal slack "
                    "%g assumes %g and is not supported by this sample; pass a confidence (e.g. 0.95) for a "
                    "Clopper-Pearson slack from the counts", percentile, fewest, shown, nominal, nominal)


def _as_result(result_or_path: LipschitzResult | str | os.PathLike[str]) -> LipschitzResult:
    if isinstance(result_or_path, LipschitzResult):
        return result_or_path
    if isinstance(result_or_path, str | os.PathLike):
        return LipschitzResult.load(Path(result_or_path))
    raise UserInputError(f"lipschitz input {type(result_or_path).__name__}: pass a LipschitzResult "
                         "or the path of a JSON file written by 'irob lipschitz'")


def bound_inputs(result_or_path: LipschitzResult | str | os.PathLike[str], percentile: str = "p99",
                 confidence: float | None = None) -> tuple[list[float], list[float], float]:
    """(lipschitz per class, slack per class, radius) for the bound (see :func:`bound_basis`)."""
    basis = bound_basis(result_or_path, percentile, confidence)
    return basis.lipschitz, basis.slack, basis.radius
