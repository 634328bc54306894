"""The ``flow`` family against known answers: the exact Gaussian transport map, bit-identical decodes,
strict save/load, the gradient L through the sampler vs a finite-difference Jacobian, resumed training."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.flow import FlowGenerator
from intrinsic_robustness.generators.flow_train import train_epoch, train_flow
from intrinsic_robustness.generators.load import load_generator, save_generator
from intrinsic_robustness.generators.protocol import check_generator
from intrinsic_robustness.lipschitz.gradient import gradient_values

TINY = {"num_classes": 3, "image_shape": (1, 4, 4), "width": 2, "levels": 0, "emb_dim": 2, "steps": 2}


def tiny(**changes) -> FlowGenerator:
    torch.manual_seed(0)
    return FlowGenerator(**{**TINY, **changes}).eval()


def test_contract_and_size():
    gen = tiny()
    check_generator(gen)
    assert gen.latent_dim == 16 and sum(p.numel() for p in gen.parameters()) < 400
    assert gen.sample_latent(5, generator=torch.Generator().manual_seed(0)).shape == (5, 16)
    assert gen.config()["steps"] == 2 and gen.config()["solver"] == "heun"


@pytest.mark.parametrize("solver, guidance", [("euler", 0.0), ("midpoint", 0.0), ("heun", 0.0), ("heun", 1.5)])
def test_decode_bit_identical_across_calls_and_batch_sizes(solver, guidance):
    gen = tiny(solver=solver, guidance=guidance, steps=3)
    z = torch.randn(21, 16, generator=torch.Generator().manual_seed(1))
    y = torch.arange(21) % 3
    with torch.no_grad():
        whole = gen.decode(z, y)
        assert torch.equal(whole, gen.decode(z, y))
        assert torch.equal(whole, torch.cat([gen.decode(z[i:i + 1], y[i:i + 1]) for i in range(21)]))
        assert torch.equal(whole, torch.cat([gen.decode(z[i:i + 5], y[i:i + 5]) for i in range(0, 21, 5)]))
    zz = z.clone().requires_grad_(True)  # the recording (checkpointed) path gives the same values
    assert torch.equal(whole, gen.decode(zz, y).detach())


def test_gradients_are_the_same_whether_activations_are_kept_or_recomputed(monkeypatch):
    import intrinsic_robustness.generators.flow as flow

    gen = tiny(steps=3)
    for p in gen.parameters():
        p.requires_grad_(False)
    z = torch.randn(21, 16, generator=torch.Generator().manual_seed(2))  # 21 rows: above RECOMPUTE_ABOVE
    y, w = torch.arange(21) % 3, torch.randn(21, 1, 4, 4, generator=torch.Generator().manual_seed(3))

    def grad(rows: slice) -> torch.Tensor:
        zz = z[rows].clone().requires_grad_(True)
        (gen.decode(zz, y[rows]) * w[rows]).sum().backward()
        return zz.grad

    recomputed, kept = grad(slice(None)), grad(slice(0, 8))
    calls = []
    monkeypatch.setattr(flow, "checkpoint", lambda fn, *a, **k: calls.append(1) or fn(*a))
    grad(slice(0, 8))
    assert not calls  # 8 rows: activations kept
    assert torch.equal(grad(slice(None)), recomputed) and calls  # 21 rows: recomputed, the same gradient
    assert torch.allclose(kept, recomputed[:8], atol=1e-6)


def test_guidance_combines_conditional_and_unconditional_fields():
    gen = tiny(guidance=2.0, steps=1, solver="euler")
    plain = tiny(steps=1, solver="euler")
    x, y = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        cond, uncond = plain.velocity(x, 0.0, y), plain.velocity(x, 0.0, torch.full_like(y, 3))
        assert torch.allclose(gen.velocity(x, 0.0, y), 3.0 * cond - 2.0 * uncond, atol=1e-6)


def test_save_load_roundtrip_is_exact_and_strict(tmp_path):
    gen = tiny(guidance=0.5, solver="midpoint")
    save_generator(gen, tmp_path / "g", gen.config())
    again = load_generator(str(tmp_path / "g"))
    assert again.config() == gen.config()
    z, y = torch.randn(6, 16), torch.arange(6) % 3
    with torch.no_grad():
        assert torch.equal(gen.decode(z, y), again.decode(z, y))
    config = json.loads((tmp_path / "g" / "generator.json").read_text())
    for change, needle in (({"solver": "rk45"}, "solver 'rk45'"), ({"steps": 0}, "steps 0"),
                           ({"latent_dim": 17}, "latent_dim 17"), ({"width": 3}, "generator.safetensors")):
        (tmp_path / "g" / "generator.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(UserInputError, match=needle) as info:
            load_generator(str(tmp_path / "g"))
        assert "\n" not in str(info.value)


class ExactGaussianVelocity(nn.Module):
    """The exact flow-matching field for x1 ~ N(mu_y, s^2 I), z ~ N(0, I), independent coupling:
    v(x, t) = mu + (t s^2 - (1 - t)) / ((1 - t)^2 + t^2 s^2) (x - t mu); its flow maps z to mu + s z."""

    def __init__(self, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("mu", mu)
        self.s = s

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, t = self.mu[y][:, None, None, None], t[:, None, None, None]
        var = (1 - t) ** 2 + t ** 2 * self.s ** 2
        return mu + (t * self.s ** 2 - (1 - t)) / var * (x - t * mu)


def _exact_error(solver: str, steps: int) -> float:
    mu, s = torch.tensor([-0.4, 0.0, 0.4], dtype=torch.float64), 0.5
    gen = FlowGenerator(3, (1, 4, 4), steps=steps, solver=solver, velocity=ExactGaussianVelocity(mu, s)).double()
    z = torch.randn(30, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = torch.arange(30) % 3
    exact = mu[y][:, None] + s * z  # on the [-1, 1] scale: no clamping
    return float((gen.raw(z, y).flatten(1) - exact).abs().max())


def test_solvers_reach_the_exact_transport_map_at_their_order():
    assert _exact_error("heun", 64) < 5e-4 and _exact_error("midpoint", 64) < 5e-4
    for solver, order in (("euler", 1), ("heun", 2), ("midpoint", 2)):  # halving h divides the error by 2^order
        ratio = _exact_error(solver, 32) / _exact_error(solver, 64)
        assert 2 ** order * 0.7 < ratio < 2 ** (order + 1) * 1.2, (solver, ratio)  # (midpoint: 8 on this ODE)


def test_trained_flow_approaches_the_exact_transport_map():
    """Trained on Gaussian classes N(m_y, s^2 I) in [0, 1], decode(z, y) must be close to m_y + s z."""
    m, s = torch.tensor([0.3, 0.5, 0.7]), 0.15
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3000) % 3
    images = m[labels][:, None, None, None] + s * torch.randn(3000, 1, 4, 4, generator=g)
    torch.manual_seed(0)
    gen = FlowGenerator(3, (1, 4, 4), width=16, levels=0, emb_dim=16, steps=4, solver="heun")
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)
    config = {"seed": 0, "batch_size": 100, "max_batches": None, "cond_drop": 0.0}
    for epoch in range(12):
        train_epoch(gen, opt, (images, labels), config, epoch, torch.device("cpu"))
    z, y = torch.randn(300, 16, generator=g), torch.arange(300) % 3
    with torch.no_grad():
        error = (gen.decode(z, y).flatten(1) - (m[y][:, None] + s * z)).abs().mean()
    baseline = (s * z).abs().mean()  # error of drawing the class mean for every z
    assert error < 0.3 * baseline, (float(error), float(baseline))  # measured: 0.16


def test_gradient_lipschitz_equals_finite_difference_jacobian_norm():
    gen = tiny(steps=2, guidance=0.5).double()
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    values, _ = gradient_values(gen, z, 1, 0.5, 0, 64, power_iters=16, ascent_steps=0, restarts=0)
    h = 1e-6
    eye = torch.eye(16, dtype=torch.float64)
    y = torch.ones(16, dtype=torch.long)
    for i in range(3):
        with torch.no_grad():
            jac = (gen.decode(z[i] + h * eye, y) - gen.decode(z[i] - h * eye, y)).flatten(1).T / (2 * h)
        assert abs(float(values[i]) - float(torch.linalg.matrix_norm(jac, 2))) < 1e-5 * float(values[i])


def test_resumed_training_ends_with_the_same_weights(tmp_path):
    options = {"size": 8, "width": 2, "levels": 1, "emb_dim": 2, "steps": 1, "batch_size": 32, "max_batches": 2,
               "fidelity_epochs": 1, "fidelity_per_class": 5}
    whole = train_flow("digits", tmp_path / "a", 2, **options)
    train_flow("digits", tmp_path / "b", 1, **options)
    resumed = train_flow("digits", tmp_path / "b", 2, **options)
    assert [h["loss"] for h in whole["history"]] == [h["loss"] for h in resumed["history"]]
    a, b = load_generator(str(tmp_path / "a")), load_generator(str(tmp_path / "b"))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    fidelity = whole["fidelity"]
    assert {"label_fidelity", "frechet_distance", "precision", "recall", "real_reference"} <= set(fidelity)
    with pytest.raises(UserInputError, match="width=2"):
        train_flow("digits", tmp_path / "b", 3, **{**options, "width": 3})
    # a new sampler keeps the weights and re-saves the generator with it
    again = train_flow("digits", tmp_path / "b", 2, **{**options, "steps": 3, "solver": "euler"})
    assert again["history"] == resumed["history"] and load_generator(str(tmp_path / "b")).steps == 3
