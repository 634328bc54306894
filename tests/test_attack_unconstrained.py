"""fmn's first-order target ranking and PGD's schedule, patience and targeted runs against closed forms.

Linear classifiers give the exact minimal L2 distance min_j margin_j / ||w_y - w_j|| (no box constraint is
active for the points used), for every logit scale and class count; plus batch consistency and the exact
restoration of train mode and requires_grad flags for every new option.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from intrinsic_robustness.attacks import PGD, MinimalNorm
from intrinsic_robustness.attacks.minimal import rank_targets
from intrinsic_robustness.errors import UserInputError

PIXELS = 36


def linear_problem(num_classes: int, logit_scale: float, seed: int,
                   n: int = 12) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random linear classifier on 6x6 images and interior points whose exact distance is in (0.005, 0.35).

    Points lie in [0.4, 0.6]^36, so a perturbation of norm < 0.4 never leaves the box: the unconstrained
    closed form is the true minimum. Returns (model, x, y, exact distance, exact closest class).
    """
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(num_classes, PIXELS, generator=g)
    bias = -weight @ torch.full((PIXELS,), 0.5) + 0.3 * torch.randn(num_classes, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, num_classes))
    with torch.no_grad():
        model[1].weight.copy_(logit_scale * weight)
        model[1].bias.copy_(logit_scale * bias)
    x = 0.4 + 0.2 * torch.rand(20 * n, 1, 6, 6, generator=g)
    with torch.no_grad():
        logits = model(x)
    y = logits.argmax(dim=1)
    diff = (weight[y][:, None, :] - weight[None, :, :]).norm(dim=2)  # [N, K] = ||w_y - w_j|| (unscaled)
    margins = (logits.gather(1, y[:, None]) - logits) / logit_scale
    dist = margins / diff.clamp_min(1e-12)
    dist[torch.arange(len(y)), y] = float("inf")
    exact, closest = dist.min(dim=1)
    keep = ((exact > 5e-3) & (exact < 0.35)).nonzero().flatten()[:n]
    return model, x[keep], y[keep], exact[keep], closest[keep]


FMN_OPTIONS = [{}, {"untargeted": True}, {"target_order": "logits", "num_targets": 9},
               {"num_targets": 1, "num_steps": 60}]


@pytest.mark.parametrize("options", FMN_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("num_classes", [2, 3, 10])
@pytest.mark.parametrize("logit_scale", [1e-3, 1.0, 1e3])
def test_fmn_matches_the_linear_closed_form(options: dict, num_classes: int, logit_scale: float) -> None:
    model, x, y, exact, _ = linear_problem(num_classes, logit_scale, seed=num_classes)
    assert len(x) >= 6
    res = MinimalNorm(**options)(model, x, y)
    assert res.success.all()
    assert (res.norms >= exact * (1 - 1e-4)).all(), "a point closer than the exact minimal distance: invalid"
    assert (res.norms <= exact * 1.05).all(), "more than 5% above the exact minimal distance"


@settings(max_examples=12, deadline=None)
@given(num_classes=st.integers(2, 12), log_scale=st.floats(-3, 3), seed=st.integers(0, 10_000))
def test_fmn_closed_form_property(num_classes: int, log_scale: float, seed: int) -> None:
    model, x, y, exact, _ = linear_problem(num_classes, 10.0 ** log_scale, seed, n=6)
    if len(x) == 0:
        return
    res = MinimalNorm()(model, x, y)
    assert (res.norms >= exact * (1 - 1e-4)).all()
    assert (res.norms <= exact * 1.05).all()


@pytest.mark.parametrize("num_classes", [3, 10])
def test_first_order_ranking_is_exact_for_linear_models(num_classes: int) -> None:
    model, x, y, _, closest = linear_problem(num_classes, 2.0, seed=7)
    order = rank_targets(model, x, y)
    assert order.shape == (len(x), num_classes - 1)
    assert torch.equal(order[:, 0], closest)
    assert not (order == y[:, None]).any()
    assert torch.equal(order.sort(dim=1).values, rank_targets(model, x, y, "logits").sort(dim=1).values)


def test_ranking_only_reorders_the_likeliest_candidates() -> None:
    model, x, y, _, _ = linear_problem(10, 1.0, seed=11)
    by_logit = rank_targets(model, x, y, "logits")
    order = rank_targets(model, x, y, candidates=3)
    assert torch.equal(order[:, 3:], by_logit[:, 3:])
    assert torch.equal(order[:, :3].sort(dim=1).values, by_logit[:, :3].sort(dim=1).values)


PGD_OPTIONS = [{}, {"schedule": "constant", "patience": 0}, {"num_targets": 1}, {"num_targets": 2, "patience": 3},
               {"loss": "margin", "patience": 3}, {"schedule": "constant", "step_size": 0.05, "num_steps": 40}]


@pytest.mark.parametrize("options", PGD_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
@pytest.mark.parametrize("num_classes", [2, 4, 10])
@pytest.mark.parametrize("logit_scale", [1e-2, 1e2])
def test_pgd_never_succeeds_beyond_the_exact_distance(options: dict, num_classes: int, logit_scale: float) -> None:
    model, x, y, exact, _ = linear_problem(num_classes, logit_scale, seed=3 + num_classes, n=16)
    eps = float(exact.median())
    res = PGD(**options)(model, x, y, eps=eps)
    assert not res.success[exact > eps * (1 + 1e-4)].any(), "success beyond the exact minimal distance"
    assert (res.norms[res.success] <= eps + 1e-5).all()
    if num_classes == 2 or options.get("num_targets"):
        # Binary, or a targeted run against the first-order closest class (exact for a linear model): the
        # targeted margin is linear, so ascent over the ball must reach every boundary closer than eps.
        # (Untargeted runs on several classes can stall on the face of a farther class; no guarantee there.)
        assert res.success[exact < 0.9 * eps].all()


class CountingModel(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.rows = inner, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.inner(x)


def test_pgd_patience_stops_hopeless_examples_early() -> None:
    model, x, y, exact, _ = linear_problem(4, 1.0, seed=1)
    eps = 0.5 * float(exact.min())  # nothing can succeed
    costs = {}
    for patience in (0, 5):
        counted = CountingModel(model)
        res = PGD(num_steps=100, patience=patience)(counted, x, y, eps=eps)
        assert not res.success.any()
        costs[patience] = counted.rows
    assert costs[5] < 0.5 * costs[0]


def tiny_cnn(num_classes: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(), nn.Linear(64, num_classes))


ALL_OPTIONS = [(MinimalNorm, o, {}) for o in FMN_OPTIONS] + [(PGD, o, {"eps": 0.6}) for o in PGD_OPTIONS]


@pytest.mark.parametrize("cls,options,call", ALL_OPTIONS,
                         ids=[f"{c.name}-{i}" for i, (c, _, _) in enumerate(ALL_OPTIONS)])
def test_batch_consistency_and_exact_mode_restore(cls: type, options: dict, call: dict) -> None:
    model = tiny_cnn()
    model.train()
    model[2].eval()  # mixed modes and flags must come back exactly
    model[0].weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(8) % 4
    attack = cls(**options)
    batch = attack(model, x, y, seed=3, **call)
    for i in (1, 6):
        alone = attack(model, x[i:i + 1], y[i:i + 1], seed=3, index=[i], **call)
        assert bool(alone.success[0]) == bool(batch.success[i])
        assert torch.allclose(alone.norms[0], batch.norms[i], rtol=1e-4, atol=1e-5)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags


@pytest.mark.parametrize("make", [
    lambda: MinimalNorm(target_order="random"),
    lambda: MinimalNorm(num_targets=0, untargeted=False),
    lambda: PGD(schedule="linear"),
    lambda: PGD(patience=-1),
    lambda: PGD(num_targets=-2),
    lambda: PGD(final_step_size=0),
])
def test_bad_options_are_one_line_errors(make) -> None:
    with pytest.raises(UserInputError) as info:
        make()
    assert "\n" not in str(info.value)


def test_untargeted_default_follows_num_targets() -> None:
    assert MinimalNorm(num_targets=0).untargeted and not MinimalNorm().untargeted
    model, x, y, exact, _ = linear_problem(2, 1.0, seed=5)
    res = MinimalNorm(num_targets=0)(model, x, y)
    assert (res.norms <= exact * 1.05).all() and (res.norms >= exact * (1 - 1e-4)).all()
