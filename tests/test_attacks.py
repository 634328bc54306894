"""Attacks against closed-form truths: linear classifiers (unconstrained) and affine generator + linear
classifier (in-distribution); plus the template's guarantees (verification, mode restore, batch consistency)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intrinsic_robustness.attacks import (
    PGD,
    Attack,
    AutoAttackL2,
    Ensemble,
    LatentAttack,
    MinimalNorm,
    build_attack,
    invert_latents,
)
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import make_affine


def linear_model(num_classes: int, pixels: int = 36, seed: int = 0, scale: float = 3.0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, num_classes))
    with torch.no_grad():
        model[1].weight.mul_(scale)
    return model


def exact_linear_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                          projector: torch.Tensor | None = None) -> torch.Tensor:
    """min_j margin_j / ||P (w_y - w_j)||: exact minimal L2 distance to misclassification (no box active)."""
    weight = model[1].weight.detach()
    with torch.no_grad():
        logits = model(x)
    out = []
    for i in range(len(x)):
        yi = int(y[i])
        best = float("inf")
        for j in range(weight.shape[0]):
            if j == yi:
                continue
            g = weight[yi] - weight[j]
            if projector is not None:
                g = projector @ g
            best = min(best, float((logits[i, yi] - logits[i, j]) / g.norm()))
        out.append(max(best, 0.0))
    return torch.tensor(out)


def interior_points(model: nn.Module, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points in [0.4, 0.6]^36 labelled by the model, kept where the exact distance < 0.35 (box inactive)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.4 + 0.2 * torch.rand(4 * n, 1, 6, 6, generator=g)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    exact = exact_linear_distance(model, x, y)
    keep = (exact > 1e-3) & (exact < 0.35)
    return x[keep][:n], y[keep][:n], exact[keep][:n]


@pytest.mark.parametrize("num_classes", [2, 4])
def test_minimal_norm_matches_linear_closed_form(num_classes: int) -> None:
    model = linear_model(num_classes)
    x, y, exact = interior_points(model, 24)
    res = MinimalNorm(num_steps=60)(model, x, y)
    assert res.success.all()
    assert (res.norms >= exact * (1 - 1e-4)).all(), "found a point closer than the true minimum: invalid"
    assert (res.norms <= exact * 1.05).all(), "more than 5% above the exact minimal distance"
    with torch.no_grad():
        assert (model(res.x_adv).argmax(dim=1) != y).all()


def test_pgd_breaks_exactly_above_the_linear_distance() -> None:
    model = linear_model(3)
    x, y, exact = interior_points(model, 16)
    eps = float(exact.median())
    res = PGD(num_steps=40, step_size=0.05)(model, x, y, eps=eps)
    assert not res.success[exact > eps + 1e-4].any(), "PGD claims a success beyond the true minimal distance"
    assert res.success[exact < 0.9 * eps].all()
    assert (res.norms[res.success] <= eps + 1e-5).all()


@pytest.fixture
def affine_setup():
    """Affine generator clamp(A z + b_y) + a linear classifier, points where no clamping can matter."""
    gen = make_affine(latent_dim=8, num_classes=3, height=6, width=6, scale=0.05, seed=0)
    g = torch.Generator().manual_seed(1)
    latent_part = torch.randn(3, 8, generator=g)
    weight = (torch.linalg.pinv(gen.weight).T @ latent_part.T).T + torch.randn(3, 36, generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 3))
    with torch.no_grad():
        model[1].weight.copy_(5 * weight / weight.norm(dim=1, keepdim=True))
        model[1].bias.zero_()
    y = torch.arange(300) % 3
    z = torch.randn(300, 8, generator=g)
    x = gen.decode(z, y)
    u, _, _ = torch.linalg.svd(gen.weight, full_matrices=False)
    exact_in = exact_linear_distance(model, x, y, projector=u @ u.T)
    exact_unc = exact_linear_distance(model, x, y)
    with torch.no_grad():
        correct = model(x).argmax(dim=1) == y
    edge = torch.minimum(x, 1 - x).flatten(1).min(dim=1).values
    # Within a ball of radius < distance to the box edge no pixel clamps, so the affine closed form is exact.
    keep = (correct & (exact_in > 0.02) & (exact_in < 0.9 * edge)).nonzero().flatten()[:10]
    return gen, model, x[keep], y[keep], z[keep], exact_in[keep], exact_unc[keep]


def test_latent_attack_reaches_affine_closed_form(affine_setup) -> None:
    gen, model, x, y, z, exact_in, exact_unc = affine_setup
    assert len(x) >= 6
    res = LatentAttack(gen)(model, x, y, z=z)
    assert res.success.all()
    assert (res.norms >= exact_in * (1 - 1e-3)).all()
    assert (res.norms <= exact_in * 1.05).all()
    assert torch.allclose(gen.decode(res.z_adv, y), res.x_adv, atol=1e-6)
    unc = MinimalNorm(num_steps=60)(model, x, y)
    assert (unc.norms <= res.norms + 1e-5).all(), "unconstrained norm above in-distribution norm"


def test_inversion_recovers_affine_latents(affine_setup) -> None:
    gen, _, x, y, _, _, _ = affine_setup
    z, err = invert_latents(gen, x[:4], y[:4], steps=150, restarts=1, lr=0.1)
    assert (err < 1e-2).all()
    assert torch.allclose(gen.decode(z, y[:4]), x[:4], atol=1e-2)


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.1), nn.Flatten(), nn.Linear(64, 3))


@pytest.mark.parametrize("make", [
    lambda gen: (PGD(num_steps=10, step_size=0.1, restarts=2), {"eps": 0.3}),
    lambda gen: (MinimalNorm(num_steps=20, num_targets=1), {}),
    lambda gen: (LatentAttack(gen, search_steps=2, num_steps=15, lr=0.05), {}),
])
def test_batch_consistency_and_mode_restore(make, affine_generator) -> None:
    model = tiny_cnn()
    model.train()
    model[0].weight.requires_grad_(False)  # a mixed state that must come back exactly
    attack, kwargs = make(affine_generator)
    affine_generator.train()
    y = torch.arange(6) % 3
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(3))
    x = affine_generator.decode(z, y).detach()
    batch = attack(model, x, y, seed=5, z=z, **kwargs)
    for i in (0, 4):
        alone = attack(model, x[i:i + 1], y[i:i + 1], seed=5, index=[i], z=z[i:i + 1], **kwargs)
        assert bool(alone.success[0]) == bool(batch.success[i])
        assert torch.allclose(alone.norms[0], batch.norms[i], rtol=1e-4, atol=1e-5)
    assert model.training and all(m.training for m in model.modules())
    assert affine_generator.training
    assert not model[0].weight.requires_grad and model[0].bias.requires_grad and model[4].weight.requires_grad


class _Liar(Attack):
    name = "liar"

    def _attack(self, model, x, y, ctx):
        return x + 5.0  # outside the box and (after clipping) not necessarily misclassified


class _Crash(Attack):
    name = "crash"

    def _attack(self, model, x, y, ctx):
        raise RuntimeError("boom")


def test_template_verifies_claims_and_restores_on_error() -> None:
    model = linear_model(3)
    x = torch.full((4, 1, 6, 6), 0.5)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    res = _Liar()(model, x, y)
    with torch.no_grad():
        wrong = model(torch.ones_like(x)).argmax(dim=1) != y
    assert torch.equal(res.success, wrong)
    assert torch.isinf(res.norms[~wrong]).all() and (res.x_adv <= 1).all()
    model.train()
    with pytest.raises(RuntimeError):
        _Crash()(model, x, y)
    assert model.training and model[1].weight.requires_grad
    with pytest.raises(TypeError):
        type("Bad", (Attack,), {"__call__": lambda self, *a, **k: None})


def test_natural_errors_have_norm_zero_and_bad_inputs_are_one_line_errors() -> None:
    model = linear_model(3)
    x = torch.full((3, 1, 6, 6), 0.5)
    with torch.no_grad():
        pred = model(x).argmax(dim=1)
    y = (pred + 1) % 3
    res = MinimalNorm(num_steps=5)(model, x, y)
    assert res.success.all() and (res.norms == 0).all() and torch.equal(res.x_adv, x)
    with pytest.raises(UserInputError):
        PGD()(model, x, y)  # no eps
    with pytest.raises(UserInputError):
        MinimalNorm()(model, x * 3, y)
    with pytest.raises(UserInputError):
        LatentAttack(make_affine())(model, x, y)  # no latents
    with pytest.raises(UserInputError):
        build_attack("latent", "unconstrained")


def test_autoattack_wrapper_on_a_linear_model() -> None:
    model = linear_model(4)
    x, y, exact = interior_points(model, 6)
    eps = float(exact.median())
    aa = AutoAttackL2(attacks=("apgd-ce", "fab-t", "square"), square_queries=20)  # small version: fast
    state = torch.random.get_rng_state()
    res = aa(model, x, y, eps=eps)
    assert torch.equal(state, torch.random.get_rng_state()), "AutoAttack leaked its seeding into the global RNG"
    assert not res.success[exact > eps + 1e-4].any()
    assert res.success[exact < 0.95 * eps].all()
    assert (res.norms[res.success] <= eps + 1e-4).all()


def test_ensemble_keeps_minimum_and_cascades() -> None:
    model = linear_model(3)
    x, y, exact = interior_points(model, 12)
    grid = (float(exact.quantile(0.3)), float(exact.quantile(0.7)))
    pgd = PGD(num_steps=20, step_size=0.05)
    ens = Ensemble([MinimalNorm(num_steps=30), pgd], eps=grid)
    res = ens(model, x, y)
    fmn = MinimalNorm(num_steps=30)(model, x, y)
    assert (res.norms <= fmn.norms + 1e-6).all()
    assert ens.last_counts["fmn"] == len(x)
    assert ens.last_counts[f"pgd@{grid[0]:g}"] == int(fmn.robust(grid[0]).sum())  # only the still-robust
    for e in grid:
        alone = pgd(model, x, y, eps=e)
        assert res.robust_accuracy(e) <= alone.robust_accuracy(e) + 1e-9
