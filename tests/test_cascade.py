"""The adaptive unconstrained cascade on cases with a known answer.

A linear classifier's minimal L2 distance is min_j margin_j / ||w_y - w_j||. A "decoy" model makes the
first-order ranking mislead: four classes whose logits rise steeply at x (so the DeepFool estimate ranks
them closest) but saturate below the true logit, plus one honest linear class at exact distance 1. Only an
attack that spends more targets on the survivors finds the honest class.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intrinsic_robustness.attacks import PGD, Ensemble, MinimalNorm
from intrinsic_robustness.attacks.minimal import ranked_distances
from intrinsic_robustness.errors import UserInputError

SIDE = 16


class Decoys(nn.Module):
    """Logits on 1x16x16 images: class 0 constant 1; classes 1-4 min(10 t_k, 0.95) + 0.02 t_k (distance 2.5
    along u_k, first-order estimate ~0.1); class 5 t_5 (distance exactly 1); classes 6-9 t_k / 2 (distance 2)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(9, SIDE * SIDE, generator=g)
        u, _ = torch.linalg.qr(u.T)  # orthonormal directions: each class moves along its own axis
        self.register_buffer("u", u.T.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x.flatten(1) - 0.5) @ self.u.T  # [N, 9] coordinates along the class directions
        decoy = 10 * t[:, :4] - torch.relu(10 * t[:, :4] - 0.95) + 0.02 * t[:, :4]
        honest = t[:, 4:5]
        far = t[:, 5:] / 2
        return torch.cat([torch.ones(len(x), 1), decoy, honest, far], dim=1)


def decoy_points(n: int = 4) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    model = Decoys()
    x = torch.full((n, 1, SIDE, SIDE), 0.5)
    return model, x, torch.zeros(n, dtype=torch.long)


def test_first_order_ranking_is_misled_by_the_decoys() -> None:
    model, x, y = decoy_points()
    order, dist = ranked_distances(model, x, y)
    assert set(order[0, :4].tolist()) == {1, 2, 3, 4} and order[0, 4] == 5
    assert dist[0, :4].max() < 0.11 and dist[0, 4] == pytest.approx(1.0, rel=1e-4)


def test_survivors_get_more_targets_and_reach_the_exact_distance() -> None:
    model, x, y = decoy_points()
    plain = MinimalNorm(adaptive=False)(model, x, y, eps=2.0)
    adaptive = MinimalNorm()(model, x, y, eps=2.0)
    assert (plain.norms > 2.0).all()  # the four decoys only break at 2.5
    assert (adaptive.norms >= 1.0 - 1e-4).all() and (adaptive.norms <= 1.02).all()  # valid and within 2%


def test_without_a_budget_only_what_found_nothing_is_a_survivor() -> None:
    model, x, y = decoy_points()
    res = MinimalNorm()(model, x, y)  # the decoys break at 2.5: found, ranking not uncertain
    assert (res.norms > 2.4).all() and (res.norms < 2.6).all()


def test_an_ensemble_hands_its_largest_eps_to_fmn() -> None:
    model, x, y = decoy_points()
    pgd = PGD(num_steps=10, step_size=0.2)
    res = Ensemble([MinimalNorm(), pgd], eps=[0.5, 1.5])(model, x, y)
    assert (res.norms <= 1.02).all() and (res.norms >= 1.0 - 1e-4).all()


def test_uncertain_ranking_gets_the_next_targets() -> None:
    """Two honest classes at distances 1.00 and 1.05 cut between by num_targets=1: rank_tol decides."""
    g = torch.Generator().manual_seed(1)
    w = torch.linalg.qr(torch.randn(SIDE * SIDE, 2, generator=g))[0].T
    model = nn.Sequential(nn.Flatten(), nn.Linear(SIDE * SIDE, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.stack([torch.zeros(SIDE * SIDE), w[0] / 1.05, w[1] / 1.10]))
        model[1].bias.copy_(torch.tensor([1.0, 0.0, 0.0]) - model[1].weight @ torch.full((SIDE * SIDE,), 0.5))
    x = torch.full((3, 1, SIDE, SIDE), 0.5)
    y = torch.zeros(3, dtype=torch.long)
    # exact distances 1.05 (class 1) and 1.10 (class 2); the next one is within 10% of the tried one
    _, dist = ranked_distances(model, x, y)
    assert dist[0].tolist()[:2] == pytest.approx([1.05, 1.10], rel=1e-4)
    assert MinimalNorm(num_targets=1, rank_tol=0.0)._second_round(dist, 1, torch.ones(3), _ctx()).sum() == 0
    assert MinimalNorm(num_targets=1)._second_round(dist, 1, torch.ones(3), _ctx()).all()


def _ctx():  # noqa: ANN202 - a context without a budget
    from intrinsic_robustness.attacks.base import AttackContext

    return AttackContext(eps=None, rngs=[])


@pytest.mark.parametrize("num_classes", [3, 10])
def test_adaptive_fmn_keeps_the_linear_closed_form(num_classes: int) -> None:
    from tests.test_attack_unconstrained import linear_problem

    model, x, y, exact, _ = linear_problem(num_classes, 1.0, seed=num_classes)
    res = MinimalNorm()(model, x, y, eps=0.01)  # every example is a survivor at this budget
    assert (res.norms >= exact - 1e-5).all() and (res.norms <= exact * 1.05).all()


def test_bad_adaptive_options_are_one_line_errors() -> None:
    with pytest.raises(UserInputError, match="extra_targets"):
        MinimalNorm(extra_targets=-1)
