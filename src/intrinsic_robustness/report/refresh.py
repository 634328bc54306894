"""Re-derive a committed ``report.json`` with the current code, without its run directory.

A report keeps the facts it was built from: per-anchor Lipschitz values, per-class errors and per-example
minimal norms. Everything computed from them (the slack a percentile really supports, clipped bounds,
intervals, McNemar comparisons, flags) can therefore be recomputed when those derivations change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.threat import eps_key, survives

STORED_KEYS = ("eps", "priors", "lipschitz", "classifiers", "intrinsic")


def _basis(method: str, stored: dict[str, Any], confidence: float | None) -> dict[str, Any]:
    """One Lipschitz entry rebuilt from its per-anchor values (what the slack and its support rest on)."""
    import torch

    from intrinsic_robustness.bound import side_condition_limit
    from intrinsic_robustness.lipschitz.result import ClassLipschitz, LipschitzResult, bound_basis

    per_class = tuple(ClassLipschitz.from_values(c, torch.tensor(v, dtype=torch.float64))
                      for c, v in enumerate(stored["values"]))
    result = LipschitzResult(method, float(stored["radius"]), {"num_classes": len(per_class)}, per_class,
                             int(stored.get("generator_evaluations", 0)), float(stored.get("seconds") or 0.0),
                             stored.get("note", ""), bool(stored.get("certified", False)))
    basis = bound_basis(result, stored["percentile"], confidence)
    stored = {k: v for k, v in stored.items() if k != "max_eps"}  # the side-condition limit's old key
    return {**stored, "lipschitz": basis.lipschitz, "slack": basis.slack, "confidence": basis.confidence,
            "exceeding": basis.exceeding, "anchors": basis.anchors, "certificate": basis.certificate,
            "eps_limit": side_condition_limit(basis.lipschitz, basis.radius), "basis": basis.describe()}


def _accuracies(entry: dict[str, Any]) -> None:
    """Robust accuracy per threat and eps recounted from the stored minimal norms (one rule everywhere)."""
    from intrinsic_robustness.report.data import norms_array

    for threat, norms in (entry.get("min_norms") or {}).items():
        if norms and threat in entry["robust_accuracy"]:
            arr = norms_array(norms)
            entry["robust_accuracy"][threat] = {eps_key(float(k)): float(np.mean(survives(arr, float(k))))
                                                for k in entry["robust_accuracy"][threat]}


def refresh(report: dict[str, Any], confidence: float | None = None) -> dict[str, Any]:
    """The report with every derived number recomputed from its stored facts (flags excluded; see :mod:`.flags`)."""
    from intrinsic_robustness.report.data import _bounds, _gaps, _intrinsic_curves, comparisons, intervals

    missing = [k for k in STORED_KEYS if k not in report]
    if missing:
        raise UserInputError(f"report.json lacks {', '.join(missing)}: it was not written by 'irob report'")
    out = dict(report)
    eps = np.array(sorted(float(e) for e in report["eps"]), dtype=float)
    priors = list(report["priors"])
    curves = report["intrinsic"]["curves"]
    conditions = list(next(iter(curves.values()))) if curves else ["per_class"]
    out["lipschitz"] = {m: _basis(m, s, confidence) for m, s in report["lipschitz"].items()}
    classifiers = []
    for stored in report["classifiers"]:
        entry = dict(stored, robust_accuracy={t: dict(a) for t, a in (stored.get("robust_accuracy") or {}).items()})
        if not entry.get("missing"):
            entry["natural_accuracy"] = 1.0 - float(entry["natural_error"])
            _accuracies(entry)
            entry.update(intervals(entry))
            if None not in entry["class_errors"] and out["lipschitz"]:
                entry.update(_bounds(entry, out["lipschitz"], eps, priors, conditions))
                entry["gap"] = _gaps(entry)
        classifiers.append(entry)
    out["classifiers"] = classifiers
    out["comparisons"] = comparisons(classifiers, eps)
    out["confidence"] = 0.95
    risk = np.asarray(report["intrinsic"]["risk"], dtype=float)
    out["intrinsic"] = {"risk": [float(r) for r in risk],
                        "curves": _intrinsic_curves(risk, eps, out["lipschitz"], priors, conditions)}
    return out
