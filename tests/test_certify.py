"""Certified radii: exact on linear models (closed form), sound lower bounds on ReLU nets."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from intrinsic_robustness.certify import certified_radius, check_certifiable, worst_margin_bound
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.models import build_architecture
from intrinsic_robustness.training import pgd_l2


def exact_linear_distance(model: nn.Sequential, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """min over j != y of margin_j / ||w_y - w_j||: the exact L2 distance to the decision boundary (0 if wrong)."""
    w, b = model[1].weight, model[1].bias
    with torch.no_grad():
        logits = x.flatten(1) @ w.T + b
        out = []
        for i in range(len(y)):
            yi = int(y[i])
            if logits[i].argmax() != yi:
                out.append(0.0)
                continue
            out.append(min(float((logits[i, yi] - logits[i, j]) / (w[yi] - w[j]).norm())
                           for j in range(w.shape[0]) if j != yi))
    return torch.tensor(out)


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 4))
def test_linear_certified_radius_is_the_exact_distance_from_below(seed, k):
    torch.manual_seed(seed)
    model = build_architecture("linear", k, (1, 3, 3))
    x = torch.rand(12, 1, 3, 3)
    y = torch.randint(0, k, (12,))
    exact = exact_linear_distance(model, x, y)
    radius = certified_radius(model, x, y, tol=1e-4)
    assert (radius <= exact + 1e-5).all()
    assert (radius >= exact - 2e-4).all()
    assert (radius[exact == 0] == 0).all()


def test_relu_net_radius_is_sound_against_pgd():
    torch.manual_seed(0)
    model = build_architecture("mlp-tiny", 3, (1, 4, 4))
    x = torch.rand(16, 1, 4, 4)
    with torch.no_grad():
        y = model(x).argmax(1)
    radius = certified_radius(model, x, y, tol=1e-3)
    assert (radius > 0).all()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # strong attacks inside the certified ball never succeed
        x_adv = pgd_l2(model, x, y, radius * 0.999, 50, float(radius.max()) / 5, g)
        with torch.no_grad():
            assert (model(x_adv).argmax(1) == y).all()
    # and the bound really is an upper bound on the worst margin at that radius
    assert (worst_margin_bound(model, x, y, radius) < 0).all()


def test_certified_radius_keeps_mode_and_rejects_uncertifiable_nets():
    model = build_architecture("mlp-tiny", 2, (1, 4, 4)).train()
    certified_radius(model, torch.rand(3, 1, 4, 4), torch.tensor([0, 1, 0]))
    assert model.training
    with pytest.raises(UserInputError, match="no dual bound"):
        check_certifiable(nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 2)))
    with pytest.raises(UserInputError, match="end with an nn.Linear"):
        check_certifiable(nn.Sequential(nn.Flatten(), nn.Linear(16, 2), nn.ReLU()))
    with pytest.raises(UserInputError, match="same batch size"):
        certified_radius(model, torch.rand(3, 1, 4, 4), torch.tensor([0, 1]))
