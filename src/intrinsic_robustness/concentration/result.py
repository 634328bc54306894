"""What a concentration estimate returns: one row per (method, alpha, eps) with its region, and the re-check."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from intrinsic_robustness.errors import UserInputError

FORMAT = "irob-concentration/1"
KIND = ("estimate: regions fitted on one half of the sample, measured on the held-out half; 1 - adv_risk_test "
        "estimates the best robustness of a classifier with risk >= alpha; it is not a bound")


@dataclass(frozen=True)
class ConcentrationRow:
    """One fitted region: its measure and its eps-expansion's measure on both halves."""

    method: str
    alpha: float
    eps: float
    risk_train: float
    risk_test: float
    adv_risk_train: float
    adv_risk_test: float
    risk_test_ci: list[float] | None
    adv_risk_test_ci: list[float] | None
    region: dict[str, Any]
    best: bool | None = None

    @property
    def risk_short(self) -> bool:
        """True when the held-out risk is clearly below alpha (the 95% interval's upper end under it): the region
        then holds less than alpha, and its small expansion is not a fair figure for risk alpha."""
        return self.risk_test_ci is not None and self.risk_test_ci[1] < self.alpha

    @property
    def robustness_test(self) -> float:
        """The held-out concentration estimate of intrinsic robustness, 1 - adv_risk_test."""
        return 1.0 - self.adv_risk_test

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "robustness_test": self.robustness_test, "risk_short": self.risk_short}


@dataclass(frozen=True)
class ConcentrationResult:
    """Every row of one run, the split that produced them, and the settings."""

    rows: tuple[ConcentrationRow, ...]
    n_train: int
    n_test: int
    split_seed: int
    dimension: int
    parameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``results`` plus the split, the settings and what the numbers are."""
        return {"format": FORMAT, "results": [r.to_dict() for r in self.rows], "n_train": self.n_train,
                "n_test": self.n_test, "split_seed": self.split_seed, "dimension": self.dimension,
                "data": self.data, "parameters": self.parameters, "kind": KIND}

    def save(self, path: str | os.PathLike[str]) -> None:
        from intrinsic_robustness.storage import write_json

        write_json(path, self.to_dict())

    def best(self) -> list[ConcentrationRow]:
        """At each (alpha, eps), the row with the smallest held-out adversarial risk."""
        out: dict[tuple[float, float], ConcentrationRow] = {}
        for row in self.rows:
            key = (row.alpha, row.eps)
            if key not in out or row.adv_risk_test < out[key].adv_risk_test:
                out[key] = row
        return list(out.values())


def measure(region: dict[str, Any], points: torch.Tensor, sample: torch.Tensor | None, eps: float) -> tuple[int, int]:
    """How many of ``points`` lie in a saved region and in its eps-expansion (``sample``: the whole sample the
    ball centres index)."""
    from intrinsic_robustness.concentration.knn import ball_margin

    x = points.reshape(len(points), -1).double()
    if region.get("kind") == "halfspace":
        p = x @ torch.tensor(region["direction"], dtype=torch.float64)
        t = float(region["threshold"])
        return int((p <= t).sum()), int((p <= t + eps).sum())
    if region.get("kind") == "balls":
        if sample is None:
            raise UserInputError("balls region: pass the sample its centre indices point into")
        centres = sample.reshape(len(sample), -1).double()[torch.tensor(region["centres"], dtype=torch.long)]
        margin = ball_margin(x, centres, torch.tensor(region["radii"], dtype=torch.float64))
        return int((margin <= 0).sum()), int((margin <= eps).sum())
    raise UserInputError(f"region kind {region.get('kind')!r}: expected halfspace or balls")


def recheck(result: dict[str, Any], sample: torch.Tensor) -> list[tuple[float, float]]:
    """Re-measure every saved region on the held-out half of ``sample`` (split from ``split_seed``):
    ``(risk_test, adv_risk_test)`` per row, from the JSON alone."""
    from intrinsic_robustness.concentration.split import split_indices

    fraction = float(result.get("parameters", {}).get("fit_fraction", 0.5))
    _, test = split_indices(len(sample), int(result["split_seed"]), fraction)
    held = sample.reshape(len(sample), -1)[test]
    out = []
    for row in result["results"]:
        inside, expanded = measure(row["region"], held, sample, float(row["eps"]))
        out.append((inside / len(held), expanded / len(held)))
    return out
