"""Findings a report must show rather than hide: each flag is a dict with ``kind``, numbers and a message."""

from __future__ import annotations

from typing import Any

import numpy as np

from intrinsic_robustness.report.data import norms_array


def robust_above_bound(report: dict[str, Any], tolerance: float) -> list[dict[str, Any]]:
    """Measured (or certified) robust accuracy above the classifier's own T1 bound."""
    flags = []
    for c in report["classifiers"]:
        for method, table in (c.get("gap") or {}).items():
            for threat, gaps in table.items():
                for eps, gap in gaps.items():
                    if gap < -tolerance:
                        bound = c["bound"][method][eps]
                        flags.append(
                            {
                                "kind": "robust_above_bound",
                                "classifier": c["name"],
                                "lipschitz": method,
                                "threat": threat,
                                "eps": float(eps),
                                "bound": bound,
                                "measured": bound - gap,
                                "message": f"{c['name']}: {threat} robust accuracy {bound - gap:.3f} at eps "
                                f"{eps} exceeds its T1 bound {bound:.3f} ({method} Lipschitz): "
                                "the Lipschitz estimate is too low or the bound's conditions fail",
                            }
                        )
    return flags


def norm_order(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Examples whose in-distribution norm is below the unconstrained norm (impossible for exact minima)."""
    flags = []
    for c in report["classifiers"]:
        norms = c.get("min_norms") or {}
        if "unconstrained" not in norms or "in-distribution" not in norms:
            continue
        unc, ind = norms_array(norms["unconstrained"]), norms_array(norms["in-distribution"])
        if unc.shape != ind.shape or unc.size == 0:
            continue
        bad = ind < unc - 1e-6
        if bad.any():
            with np.errstate(invalid="ignore"):
                worst = float(np.max(np.where(bad, unc - ind, 0.0)))
            flags.append(
                {
                    "kind": "in_distribution_below_unconstrained",
                    "classifier": c["name"],
                    "count": int(bad.sum()),
                    "fraction": float(bad.mean()),
                    "largest_difference": worst,
                    "message": f"{c['name']}: on {int(bad.sum())} of {bad.size} examples the in-distribution "
                    "attack found a smaller norm than the unconstrained one: the unconstrained "
                    "attack is not finding minimal perturbations there",
                }
            )
    return flags


def eps_beyond_radius(report: dict[str, Any]) -> list[dict[str, Any]]:
    """eps values above min_y L_y * r, where the theorems' side condition fails."""
    flags = []
    for method, lip in report["lipschitz"].items():
        over = [e for e in report["eps"] if e > lip["eps_limit"]]
        if over:
            flags.append(
                {
                    "kind": "eps_beyond_lr",
                    "lipschitz": method,
                    "eps": over,
                    "limit": lip["eps_limit"],
                    "message": f"eps {over} exceed min_y L_y r = {lip['eps_limit']:.3g} ({method}): the "
                    "bound's side condition eps <= L r does not hold there",
                }
            )
    return flags


def weak_attack(report: dict[str, Any], tolerance: float = 0.0) -> list[dict[str, Any]]:
    """A reference attack run alone (compare_attacks) breaking examples the default ensemble left robust (or, in
    reports without per-example counts, leaving a lower robust accuracy than it on the same examples)."""
    flags = []
    for c in report["classifiers"]:
        for threat, table in (c.get("per_attack") or {}).items():
            for attack, entry in table.items():
                missed = entry.get("missed") or {}
                for eps, acc in (entry.get("ensemble") or {}).items():
                    alone = entry["robust_accuracy"].get(eps)
                    count = missed.get(eps)
                    weak = count / entry["n"] > tolerance if count is not None else \
                        alone is not None and alone < acc - tolerance - 1e-9
                    if not weak:
                        continue
                    used = ", ".join(entry.get("ensemble_attacks") or ["the ensemble"])
                    found = f"breaks {count} of the first {entry['n']} examples that the default ensemble " \
                        f"({used}) left robust" if count is not None else \
                        f"leaves robust accuracy {alone:.3f} on the first {entry['n']} examples, below the " \
                        f"default ensemble's {acc:.3f} ({used})"
                    flags.append({
                        "kind": "weak_attack", "classifier": c["name"], "threat": threat, "eps": float(eps),
                        "attack": attack, "alone": alone, "ensemble": acc, "n": entry["n"], "missed": count,
                        "message": f"{c['name']}: {attack} alone {found} at eps {eps}: the ensemble misses "
                        "adversarial examples there",
                    })
    return flags


def low_fidelity(report: dict[str, Any]) -> list[dict[str, Any]]:
    gen = report["generator"]
    fid, floor = gen.get("fidelity"), gen.get("min_fidelity", 0.0)
    if fid is None:
        return [
            {
                "kind": "fidelity_unknown",
                "message": "generator fidelity was not measured (loaded generator): "
                "check that its samples show the class they are labelled with",
            }
        ]
    if fid < floor:
        return [
            {
                "kind": "low_fidelity",
                "fidelity": fid,
                "threshold": floor,
                "message": f"generator fidelity {fid:.3f} is below {floor:.2f}: a classifier trained on "
                f"real data "
                "often disagrees with the generated labels, so results say little about the real data",
            }
        ]
    return []


NEAR_CHANCE = 0.25  # fraction of the way from chance (1/k) to perfect accuracy below which a model is "near chance"


def near_chance(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Classifiers whose clean accuracy is near chance: their robust figures say nothing about robust training."""
    k = int(report.get("num_classes") or 0)
    if k < 2:
        return []
    limit = 1.0 / k + NEAR_CHANCE * (1.0 - 1.0 / k)
    out = []
    for c in report["classifiers"]:
        acc = c.get("natural_accuracy")
        if c.get("missing") or acc is None or acc >= limit:
            continue
        out.append({"kind": "near_chance", "classifier": c["name"], "natural_accuracy": acc, "threshold": limit,
                    "message": f"{c['name']}: clean accuracy {acc:.3f} is near chance ({1.0 / k:.2f} for {k} "
                    f"classes; flagged below {limit:.3f}): the model did not train, so its robust and certified "
                    "accuracies and its gap to the bound are not findings about robust training"})
    return out


def all_flags(report: dict[str, Any], tolerance: float = 0.0) -> list[dict[str, Any]]:
    from intrinsic_robustness.report.concentration import concentration_above_bound

    return (
        near_chance(report)
        + robust_above_bound(report, tolerance)
        + norm_order(report)
        + eps_beyond_radius(report)
        + weak_attack(report, tolerance)
        + low_fidelity(report)
        + concentration_above_bound(report)
    )
