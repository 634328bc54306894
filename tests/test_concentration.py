"""Concentration from data against truth: the Gaussian closed form, brute-force neighbours and ball unions,
the held-out half never used for fitting, chunk-size and seed reproducibility, and re-checkable regions."""

from __future__ import annotations

import json
import math

import pytest
import torch
from scipy.stats import norm

from intrinsic_robustness.concentration import estimate_concentration, measure, recheck, split_indices
from intrinsic_robustness.concentration.balls import Candidates, candidate_balls, greedy_union
from intrinsic_robustness.concentration.knn import ball_margin, block_distances, kth_neighbour
from intrinsic_robustness.errors import UserInputError


def gaussian(n: int, d: int, scale: float, seed: int = 0) -> torch.Tensor:
    return scale * torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 0.5


def sigma(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-4) / n)


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_halfspace_reaches_the_gaussian_closed_form(scale: float) -> None:
    """For N(m, s^2 I) the best region's eps-expansion has measure Phi(Phi^-1(alpha) + eps / s)."""
    x = gaussian(8000, 8, scale)
    eps = [0.25 * scale, 0.5 * scale, 1.0 * scale]
    result = estimate_concentration(x, [0.05, 0.2], eps, "halfspace", components=8)
    for row in result.rows:
        truth = norm.cdf(norm.ppf(row.alpha) + row.eps / scale)
        assert abs(row.risk_test - row.alpha) < 4 * sigma(row.alpha, result.n_test)
        assert abs(row.adv_risk_test - truth) < 4 * sigma(truth, result.n_test) + 0.01
        assert row.risk_train >= row.alpha  # the threshold's finite-sample side


def test_balls_never_beat_the_gaussian_optimum() -> None:
    """Half-spaces are optimal for a Gaussian: no union of balls is clearly more concentrated at its own risk."""
    scale = 1.0
    x = gaussian(3000, 4, scale, seed=1)
    result = estimate_concentration(x, [0.1, 0.3], [0.25, 0.5], "balls", max_balls=50, max_centres=600)
    for row in result.rows:
        truth = norm.cdf(norm.ppf(max(row.risk_test, 1e-6)) + row.eps / scale)
        assert row.adv_risk_test > truth - 4 * sigma(truth, result.n_test)
        assert abs(row.risk_test - row.alpha) < 5 * sigma(row.alpha, result.n_test)


def test_kth_neighbour_matches_brute_force() -> None:
    x = torch.rand(37, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ks = [1, 3, 10]
    brute = torch.cdist(x, x)
    brute.fill_diagonal_(float("inf"))
    expected = brute.sort(dim=1).values[:, [k - 1 for k in ks]].T
    for chunk in (1, 5, 1000):
        assert torch.allclose(kth_neighbour(x, ks, chunk), expected, atol=1e-9)


def test_ball_margin_and_distances_match_brute_force() -> None:
    g = torch.Generator().manual_seed(3)
    x, c = torch.rand(23, 4, generator=g, dtype=torch.float64), torch.rand(5, 4, generator=g, dtype=torch.float64)
    r = torch.rand(5, generator=g, dtype=torch.float64) * 0.4
    brute = torch.tensor([min(float((xi - cj).norm()) - float(rj) for cj, rj in zip(c, r, strict=True)) for xi in x],
                         dtype=torch.float64)
    for chunk in (1, 4, 100):
        assert torch.allclose(ball_margin(x, c, r, chunk), brute, atol=1e-9)
        assert torch.allclose(block_distances(c, x, chunk), torch.cdist(c, x), atol=1e-9)


def test_greedy_union_counts_are_its_balls() -> None:
    """The union's reported counts equal a brute-force membership count (centres left out), target reached."""
    x = torch.rand(60, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    radii = kth_neighbour(x, [4])[0]
    cand = candidate_balls(x, radii, 4, max_centres=60)
    found = greedy_union(cand, target=15, eps=0.1, max_balls=20)
    assert found is not None and found["inside"] == 15
    centres = torch.tensor(found["centres"])
    d = torch.cdist(x, x[centres]) - torch.tensor(found["radii"], dtype=torch.float64)[None, :]
    others = torch.ones(60, dtype=torch.bool)
    others[centres] = False
    assert int(((d.min(1).values <= 1e-12) & others).sum()) == found["inside"]
    assert int(((d.min(1).values <= 0.1 + 1e-12) & others).sum()) == found["expanded"]
    assert found["others"] == 60 - len(centres)


def test_greedy_union_fails_cleanly_when_the_budget_is_too_small() -> None:
    x = torch.rand(30, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    cand = candidate_balls(x, kth_neighbour(x, [1])[0], 1, max_centres=30)
    assert greedy_union(cand, target=20, eps=0.0, max_balls=2) is None
    assert isinstance(cand, Candidates)


def _fitted(result: object) -> list[tuple[object, ...]]:
    return [(r.method, r.alpha, r.eps, r.risk_train, r.adv_risk_train, json.dumps(r.region, sort_keys=True))
            for r in result.rows]  # type: ignore[attr-defined]


def test_held_out_half_is_never_used_for_fitting() -> None:
    x = gaussian(400, 6, 0.3, seed=6)
    _, test = split_indices(len(x), 11)
    changed = x.clone()
    changed[test] = torch.rand(len(test), 6, generator=torch.Generator().manual_seed(7)) * 5
    kwargs = {"max_balls": 20, "max_centres": 100, "components": 6, "split_seed": 11}
    a = estimate_concentration(x, [0.1], [0.2, 0.5], "all", **kwargs)
    b = estimate_concentration(changed, [0.1], [0.2, 0.5], "all", **kwargs)
    assert _fitted(a) == _fitted(b)
    assert [r.adv_risk_test for r in a.rows] != [r.adv_risk_test for r in b.rows]


def test_chunk_size_and_split_seed_reproduce_the_numbers() -> None:
    x = gaussian(300, 5, 0.4, seed=8)
    kwargs = {"max_balls": 20, "max_centres": 80, "components": 5}
    base = estimate_concentration(x, [0.1, 0.25], [0.3], "all", chunk=1024, **kwargs).to_dict()
    small = estimate_concentration(x, [0.1, 0.25], [0.3], "all", chunk=7, **kwargs).to_dict()
    again = estimate_concentration(x, [0.1, 0.25], [0.3], "all", chunk=1024, **kwargs).to_dict()
    other = estimate_concentration(x, [0.1, 0.25], [0.3], "all", split_seed=1, **kwargs).to_dict()
    assert _numbers(base) == _numbers(small) == _numbers(again)
    assert _numbers(base) != _numbers(other)


def _numbers(payload: dict) -> list[tuple[object, ...]]:
    """Every count-based figure exactly, region floats to float32 round-off (a matrix product's summation order
    may change with its shape), region indices exactly."""
    keys = ("risk_train", "risk_test", "adv_risk_train", "adv_risk_test", "best")
    out = []
    for row in payload["results"]:
        region = row["region"]
        floats = [round(v, 5) for v in region.get("direction", []) + region.get("radii", [])]
        threshold = round(region.get("threshold", 0.0), 5)
        out.append((*(row[k] for k in keys), tuple(region.get("centres", [])), tuple(floats), threshold))
    return out


def test_json_keys_and_regions_recheck() -> None:
    x = gaussian(500, 6, 0.3, seed=9)
    result = estimate_concentration(x, [0.05, 0.2], [0.2, 0.6], "all", max_balls=30, max_centres=150, components=6)
    payload = json.loads(json.dumps(result.to_dict()))
    assert {"results", "n_train", "n_test", "split_seed"} <= set(payload)
    for row in payload["results"]:
        assert {"method", "alpha", "eps", "risk_train", "risk_test", "adv_risk_train", "adv_risk_test"} <= set(row)
    for row, (risk, adv) in zip(payload["results"], recheck(payload, x), strict=True):
        assert risk == pytest.approx(row["risk_test"], abs=1.5 / payload["n_test"])
        assert adv == pytest.approx(row["adv_risk_test"], abs=1.5 / payload["n_test"])
    best = [r for r in payload["results"] if r["best"]]
    assert len(best) == 4 and len({(r["alpha"], r["eps"]) for r in best}) == 4
    for r in best:
        rivals = [(o["risk_short"], o["adv_risk_test"]) for o in payload["results"]
                  if (o["alpha"], o["eps"]) == (r["alpha"], r["eps"])]
        assert (r["risk_short"], r["adv_risk_test"]) == min(rivals)
        assert r["risk_short"] == (r["risk_test_ci"][1] < r["alpha"])


def test_measure_of_a_halfspace_by_hand() -> None:
    region = {"kind": "halfspace", "direction": [1.0, 0.0], "threshold": 0.5}
    points = torch.tensor([[0.0, 9.0], [0.5, 0.0], [0.7, 1.0], [2.0, 0.0]])
    assert measure(region, points, None, 0.3) == (2, 3)
    with pytest.raises(UserInputError):
        measure({"kind": "cube"}, points, None, 0.1)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"alpha": [0.0]}, "--alpha"), ({"alpha": [1.0]}, "--alpha"), ({"alpha": [float("nan")]}, "--alpha"),
    ({"eps": [-0.1]}, "--eps"), ({"method": "cubes"}, "--method"), ({"max_balls": 1000}, "more balls"),
    ({"components": 0}, "--components"), ({"chunk": 0}, "--chunk"),
])
def test_bad_requests_are_one_line_errors(kwargs: dict, words: str) -> None:
    args = {"alpha": [0.1], "eps": [0.5], "method": "all", **kwargs}
    x = gaussian(100, 3, 1.0)
    with pytest.raises(UserInputError, match=words):
        estimate_concentration(x, args.pop("alpha"), args.pop("eps"), args.pop("method"), **args)


def test_empty_and_tiny_samples_are_refused() -> None:
    with pytest.raises(UserInputError, match="empty"):
        estimate_concentration(torch.zeros(0, 4), [0.1], [0.1])
    with pytest.raises(UserInputError, match="too small"):
        estimate_concentration(torch.zeros(3, 4), [0.1], [0.1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_numbers() -> None:
    x = gaussian(400, 6, 0.3, seed=10)
    kwargs = {"max_balls": 20, "max_centres": 100, "components": 6}
    cpu = estimate_concentration(x, [0.1], [0.2, 0.5], "all", device="cpu", **kwargs).to_dict()
    cuda = estimate_concentration(x, [0.1], [0.2, 0.5], "all", device="cuda", **kwargs).to_dict()
    assert _numbers(cpu) == _numbers(cuda)
