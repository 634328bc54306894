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

from intrinsic_robustness.attacks import PGD, Ensemble, MinimalNorm
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
    lambda: PGD(warm_tol=-0.1),
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


def two_faces(near: float = 0.95, far: float = 1.2, steep: float = 20.0
              ) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 0 at x0 = 0.5 on 8x8 images; class 1's boundary lies ``near`` away along e1 behind a steep logit
    (its probability is negligible at x0), class 2's ``far`` away along e2 behind a shallow one, which
    dominates the cross-entropy gradient. Returns (model, x0, y, e1)."""
    d = 64
    e1, e2 = torch.zeros(d), torch.zeros(d)
    e1[:32], e2[32:] = 32 ** -0.5, 32 ** -0.5
    x0 = torch.full((d,), 0.5)
    lin = nn.Linear(d, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(d), steep * e1, e2]))
        lin.bias.copy_(torch.tensor([0.0, -steep * near, -far]) - lin.weight @ x0)
    return nn.Sequential(nn.Flatten(), lin), x0.reshape(1, 1, 8, 8), torch.tensor([0]), e1.reshape(1, 1, 8, 8)


class FixedPoint(MinimalNorm):
    """A minimum-norm member that always answers x + ``offset`` (a point found just outside eps)."""

    name = "fixed-point"

    def __init__(self, offset: torch.Tensor) -> None:
        super().__init__()
        self.offset = offset

    def _attack(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx) -> torch.Tensor:
        return x + self.offset


def test_pgd_near_run_decides_an_example_just_outside_its_start() -> None:
    """Untargeted CE PGD stalls on the far class's face (with or without early stopping); a start misclassified
    within (1 + warm_tol) eps makes it target that class from x and find the boundary inside eps."""
    model, x, y, e1 = two_faces()
    for patience in (10, 0):
        assert not PGD(patience=patience)(model, x, y, eps=1.0).success.any()
    near = PGD()(model, x, y, eps=1.0, start=x + 1.1 * e1)
    assert near.success.all() and float(near.norms[0]) <= 1.0 + 1e-5
    assert not PGD()(model, x, y, eps=1.0, start=x + 1.3 * e1).success.any()  # beyond 1.25 eps: not used
    assert not PGD(warm_tol=0.0)(model, x, y, eps=1.0, start=x + 1.1 * e1).success.any()
    assert not PGD()(model, x, y, eps=1.0, start=x.clone()).success.any()  # a correctly classified start: nothing


def test_ensemble_hands_its_best_point_to_budgeted_members() -> None:
    model, x, y, e1 = two_faces()
    member = FixedPoint(1.1 * e1)
    assert float(member(model, x, y).norms[0]) == pytest.approx(1.1, rel=1e-4)
    broken = Ensemble([member, PGD()], eps=[1.0])(model, x, y)
    assert float(broken.norms[0]) <= 1.0 + 1e-5
    assert float(Ensemble([member, PGD(warm_tol=0.0)], eps=[1.0])(model, x, y).norms[0]) > 1.0


def test_start_must_match_x() -> None:
    model, x, y, _ = two_faces()
    with pytest.raises(UserInputError, match="start has shape"):
        PGD()(model, x, y, eps=1.0, start=x[:, :, :4])
