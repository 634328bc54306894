"""The concentration estimate end to end: split the sample, fit each method on one half, measure on the other."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from intrinsic_robustness.concentration import balls as ball_method
from intrinsic_robustness.concentration import halfspace as half_method
from intrinsic_robustness.concentration.knn import DEFAULT_CHUNK, ball_margin, kth_neighbour
from intrinsic_robustness.concentration.result import ConcentrationResult, ConcentrationRow
from intrinsic_robustness.concentration.split import as_points, split_indices
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.progress import advance, task

METHODS = ("halfspace", "balls", "all")


def check_request(alpha: Sequence[float], eps: Sequence[float], method: str, n_fit: int, max_balls: int,
                  max_centres: int, components: int, chunk: int) -> None:
    """Every argument checked before any work, each refusal one line naming the flag and the fix."""
    if method not in METHODS:
        raise UserInputError(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if not alpha or any(not math.isfinite(float(a)) or not 0 < float(a) < 1 for a in alpha):
        raise UserInputError(f"--alpha {list(alpha)}: give one or more risk levels strictly between 0 and 1")
    if not eps or any(not math.isfinite(float(e)) or float(e) < 0 for e in eps):
        raise UserInputError(f"--eps {list(eps)}: give one or more finite perturbation sizes >= 0")
    if method != "halfspace":
        if max_balls < 1 or max_balls > n_fit:
            raise UserInputError(f"--balls {max_balls}: more balls than the {n_fit} points of the fitting half (or "
                                 "fewer than 1); choose 1..{n_fit}".replace("{n_fit}", str(n_fit)))
        if max_centres < 1:
            raise UserInputError(f"--max-centres {max_centres}: expected a positive number of candidate centres")
    if components < 1:
        raise UserInputError(f"--components {components}: expected a positive number of principal components")
    if chunk < 1:
        raise UserInputError(f"--chunk {chunk}: expected a positive number of rows per matrix product")


def _row(method: str, alpha: float, eps: float, train: tuple[int, int], test: tuple[int, int], n_fit: int,
         n_test: int, region: dict[str, Any]) -> ConcentrationRow:
    """One result row; ``n_fit`` is the number of fitting points the train counts are over."""
    from intrinsic_robustness.stats import clopper_pearson

    return ConcentrationRow(
        method=method, alpha=float(alpha), eps=float(eps), risk_train=train[0] / n_fit, risk_test=test[0] / n_test,
        adv_risk_train=train[1] / n_fit, adv_risk_test=test[1] / n_test,
        risk_test_ci=list(clopper_pearson(test[0], n_test)), adv_risk_test_ci=list(clopper_pearson(test[1], n_test)),
        region=region)


def _halfspaces(fit: torch.Tensor, held: torch.Tensor, alpha: Sequence[float], eps: Sequence[float],
                components: int, powers: Sequence[float]) -> list[ConcentrationRow]:
    cand = half_method.candidate_directions(fit, components, powers)
    projections = fit @ cand.directions.T
    rows = []
    with task("halfspaces", len(alpha) * len(eps)) as handle:
        for a in alpha:
            for e in eps:
                found = half_method.fit_halfspace(fit, float(a), float(e), cand, projections)
                test = half_method.halfspace_counts(held, found["direction"], found["threshold"], float(e))  # type: ignore[arg-type]
                region = {"kind": "halfspace", "direction": [float(v) for v in found["direction"].cpu()],  # type: ignore[union-attr]
                          "threshold": found["threshold"], "candidate": found["label"],
                          "rule": "w . x <= threshold (w unit; the eps-expansion is w . x <= threshold + eps)"}
                rows.append(_row("halfspace", a, e, (found["inside"], found["expanded"]), test,  # type: ignore[arg-type]
                                 len(fit), len(held), region))
                advance(handle)
    return rows


def _balls(fit: torch.Tensor, held: torch.Tensor, fit_index: torch.Tensor, alpha: Sequence[float],
           eps: Sequence[float], max_balls: int, max_centres: int, knn: Sequence[int] | None,
           chunk: int) -> list[ConcentrationRow]:
    if fit.device.type == "cpu":  # candidate distances and two membership masks, [centres, n_fit] each
        from intrinsic_robustness.runtime import check_memory

        check_memory(6.0 * min(max_centres, len(fit)) * len(fit), f"--max-centres {max_centres} on {len(fit)} points")
    grids = {float(a): ball_method.neighbour_grid(float(a), len(fit), max_balls, knn) for a in alpha}
    ks = sorted({k for grid in grids.values() for k in grid})
    radii = dict(zip(ks, kth_neighbour(fit, ks, chunk), strict=True))  # one pass serves every alpha
    rows = []
    for a in alpha:
        found_all = ball_method.fit_balls(fit, float(a), [float(e) for e in eps], max_balls, max_centres,
                                          grids[float(a)], chunk, radii)
        for e, found in zip(eps, found_all, strict=True):
            local = torch.tensor(found["centres"], dtype=torch.long, device=fit.device)
            r = torch.tensor(found["radii"], dtype=fit.dtype, device=fit.device)
            margin = ball_margin(held, fit[local], r, chunk)
            test = (int((margin <= 0).sum()), int((margin <= float(e)).sum()))
            region = {"kind": "balls", "centres": [int(i) for i in fit_index[local.cpu()]],
                      "radii": [float(v) for v in found["radii"]], "k": found["k"], "balls": len(found["radii"]),
                      "train_counts": "fitting points other than the centres",
                      "rule": "union of balls ||x - sample[centre]|| <= radius (centres index the whole sample)"}
            rows.append(_row("balls", a, e, (found["inside"], found["expanded"]), test, found["others"], len(held),
                             region))
    return rows


def estimate_concentration(points: torch.Tensor, alpha: Sequence[float], eps: Sequence[float], method: str = "all",
                           split_seed: int = 0, device: str | torch.device = "cpu", *, fit_fraction: float = 0.5,
                           components: int = half_method.DEFAULT_COMPONENTS,
                           powers: Sequence[float] = half_method.DEFAULT_POWERS,
                           max_balls: int | None = None,
                           max_centres: int = ball_method.DEFAULT_MAX_CENTRES, knn: Sequence[int] | None = None,
                           chunk: int = DEFAULT_CHUNK, data: dict[str, Any] | None = None) -> ConcentrationResult:
    """Empirical concentration of a sample (rows or images): for each alpha and eps, the region of each method
    fitted on one seeded half and measured on the other. ``method`` 'all' marks the best row per (alpha, eps);
    ``max_balls`` defaults to 100 (or the fitting half's size, if smaller)."""
    from intrinsic_robustness.runtime import resolve_device

    x = as_points(points, "points")
    fit_index, test_index = split_indices(len(x), split_seed, fit_fraction)
    if max_balls is None:  # the default budget, never more balls than fitting points
        max_balls = min(ball_method.DEFAULT_MAX_BALLS, len(fit_index))
    check_request(alpha, eps, method, len(fit_index), max_balls, max_centres, components, chunk)
    dev = resolve_device(device)
    fit, held = x[fit_index].to(dev), x[test_index].to(dev)
    start = time.perf_counter()
    rows: list[ConcentrationRow] = []
    if method in ("halfspace", "all"):
        rows += _halfspaces(fit, held, alpha, eps, components, powers)
    if method in ("balls", "all"):
        rows += _balls(fit, held, fit_index, alpha, eps, max_balls, max_centres, knn, chunk)
    if method == "all":
        rows = _mark_best(rows)
    parameters = {"method": method, "fit_fraction": fit_fraction, "components": components, "powers": list(powers),
                  "max_balls": max_balls, "max_centres": max_centres, "knn": list(knn) if knn else None,
                  "chunk": chunk, "device": str(dev), "seconds": time.perf_counter() - start,
                  "torch_threads": torch.get_num_threads()}
    return ConcentrationResult(tuple(rows), len(fit_index), len(test_index), int(split_seed), int(x.shape[1]),
                               parameters, dict(data or {}))


def _mark_best(rows: list[ConcentrationRow]) -> list[ConcentrationRow]:
    """Each row with ``best`` set: True for the smallest held-out adv risk at its (alpha, eps) among the regions
    whose held-out risk is not clearly below alpha (among all of them where every one falls short)."""
    import dataclasses

    winner: dict[tuple[float, float], int] = {}
    for i, row in enumerate(rows):
        key = (row.alpha, row.eps)
        if key not in winner or (row.risk_short, row.adv_risk_test) < (rows[winner[key]].risk_short,
                                                                      rows[winner[key]].adv_risk_test):
            winner[key] = i
    chosen = set(winner.values())
    return [dataclasses.replace(row, best=i in chosen) for i, row in enumerate(rows)]
