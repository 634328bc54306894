"""Lipschitz estimators against known answers: affine oracle, brute force, scaling, batching, counting."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import make_affine
from intrinsic_robustness.lipschitz import (
    class_anchors,
    estimate_lipschitz,
    evaluations_per_anchor,
)
from intrinsic_robustness.lipschitz.sampling import (
    PaperSamplingEstimator,
    SamplingEstimator,
    neighbor_offsets,
    orthant_offsets,
    sampling_values,
)

FAST = {"power_iters": 20, "ascent_steps": 4, "restarts": 1}


class TinyMLP(nn.Module):
    """A small nonlinear conditional generator: (tanh(MLP([z, onehot])) + 1) / 2 * scale (not clamped)."""

    def __init__(self, latent_dim: int = 6, num_classes: int = 2, side: int = 4, scale: float = 1.0,
                 seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.latent_dim, self.num_classes, self.image_shape = latent_dim, num_classes, (1, side, side)
        hidden = nn.Linear(latent_dim + num_classes, 32)
        self.net = nn.Sequential(hidden, nn.Tanh(), nn.Linear(32, side * side))
        with torch.no_grad():
            self.net[2].weight.mul_(3.0)
        self.scale = scale

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, nn.functional.one_hot(y, self.num_classes).to(z)], dim=1)
        return self.scale * (torch.tanh(self.net(h)) + 1) / 2 * torch.ones(1, device=z.device).view(1, 1)

    def sample_latent(self, n, generator=None, device=None):
        return torch.randn(n, self.latent_dim, generator=generator, device=device or "cpu")


class Scaled(nn.Module):
    """decode of ``inner`` multiplied by c (a metamorphic wrapper; range is not re-checked)."""

    def __init__(self, inner: nn.Module, c: float) -> None:
        super().__init__()
        self.inner, self.c = inner, c
        self.latent_dim, self.num_classes = inner.latent_dim, inner.num_classes
        self.image_shape = inner.image_shape

    def decode(self, z, y):
        return self.c * self.inner.decode(z, y).reshape(z.shape[0], *self.image_shape)

    def sample_latent(self, n, generator=None, device=None):
        return self.inner.sample_latent(n, generator=generator, device=device)


def _values(result):
    return torch.tensor([v for c in result.per_class for v in c.values], dtype=torch.float64)


@pytest.fixture(scope="module")
def small_affine():
    """Affine generator with ||A|| small enough that no pixel is clamped within radius 0.5 of any anchor."""
    return make_affine(latent_dim=8, num_classes=3, height=6, width=6, scale=0.02, seed=0)


def test_affine_unclamped_at_anchors(small_affine):
    """Guard for the oracle tests below: A z + b_y stays inside (0, 1) with margin r ||A||."""
    margin = 0.5 * small_affine.spectral_norm
    for label in range(3):
        z = class_anchors(small_affine, label, 12, seed=0)
        raw = z @ small_affine.weight.T + small_affine.offsets[label]
        assert raw.min() > margin and raw.max() < 1 - margin


def test_gradient_equals_spectral_norm_and_sampler_stays_below(small_affine):
    true = small_affine.spectral_norm
    grad = estimate_lipschitz(small_affine, "gradient", anchors_per_class=12, **FAST)
    samp = estimate_lipschitz(small_affine, "sampling", anchors_per_class=12, neighbors=400)
    assert torch.allclose(_values(grad), torch.full((36,), true, dtype=torch.float64), atol=1e-4, rtol=0)
    assert _values(samp).max() <= true * (1 + 1e-5)
    assert _values(samp).min() > 0.5 * true  # it is an honest estimate, just a smaller one


def test_sampler_matches_brute_force_loop():
    """Chunked, scattered maxima equal a plain per-anchor loop over the same neighbours."""
    gen = TinyMLP().eval()
    z = class_anchors(gen, 1, 3, seed=4)
    values, evals = sampling_values(gen, z, 1, 0.5, SamplingEstimator(neighbors=50, batch_size=32), seed=4)
    assert evals == 3 * 51
    y = torch.ones(1, dtype=torch.long)
    with torch.no_grad():
        for i in range(3):
            off = neighbor_offsets(4, 1, i, 50, gen.latent_dim, 0.5)
            x0 = gen.decode(z[i:i + 1], y).flatten(1)
            best = max(float((gen.decode(z[i:i + 1] + d, y).flatten(1) - x0).norm() / d.norm()) for d in off)
            assert values[i].item() == pytest.approx(best, rel=1e-5)


def test_neighbours_fill_the_whole_ball():
    """Directions are uniform on the sphere (not the positive orthant) and radii are r U^(1/d)."""
    off = neighbor_offsets(0, 0, 0, 20000, 3, 0.5)
    r = off.norm(dim=1)
    assert r.max() <= 0.5 + 1e-6
    assert (off < 0).float().mean() == pytest.approx(0.5, abs=0.02)
    assert off.mean(0).abs().max() < 0.01
    for t in (0.25, 0.5, 0.75):  # P(||d|| <= t r) = t^d for d = 3
        assert (r <= t * 0.5).float().mean() == pytest.approx(t**3, abs=0.015)


METHOD_OPTIONS = {"sampling": {"neighbors": 64}, "paper-sampling": {"neighbors": 64}, "gradient": FAST}


@pytest.mark.parametrize("method", ["sampling", "paper-sampling", "gradient"])
@pytest.mark.parametrize("c", [0.25, 3.0])
def test_scaling_output_scales_estimates(method, c):
    gen = TinyMLP().eval()
    kwargs = {"anchors_per_class": 4, **METHOD_OPTIONS[method]}
    base = _values(estimate_lipschitz(gen, method, **kwargs))
    scaled = _values(estimate_lipschitz(Scaled(gen, c), method, **kwargs))
    assert torch.allclose(scaled, c * base, rtol=1e-4, atol=0)


def test_paper_sampling_is_the_papers_code():
    """Positive-orthant directions, radii r U^(1/d), and quotients on the [-1, 1] scale (2x [0, 1])."""
    off = orthant_offsets(0, 0, 0, 20000, 3, 0.5)
    assert (off >= 0).all() and off.norm(dim=1).max() <= 0.5 + 1e-6
    for t in (0.25, 0.5, 0.75):
        assert (off.norm(dim=1) <= t * 0.5).float().mean() == pytest.approx(t**3, abs=0.015)
    gen = TinyMLP().eval()
    z = class_anchors(gen, 0, 2, seed=1)
    values, _ = PaperSamplingEstimator(neighbors=30).values(gen, z, 0, 0.5, seed=1)
    y = torch.zeros(1, dtype=torch.long)
    with torch.no_grad():
        for i in range(2):
            x0 = gen.decode(z[i:i + 1], y).flatten(1)
            best = max(float((gen.decode(z[i:i + 1] + d, y).flatten(1) - x0).norm() / d.norm())
                       for d in orthant_offsets(1, 0, i, 30, gen.latent_dim, 0.5))
            assert values[i].item() == pytest.approx(2 * best, rel=1e-5)


@pytest.mark.parametrize("method", ["sampling", "gradient"])
def test_results_do_not_depend_on_batch_size(method):
    gen = TinyMLP().eval()
    kwargs = {"anchors_per_class": 5, **METHOD_OPTIONS[method]}
    one = estimate_lipschitz(gen, method, batch_size=1, **kwargs)
    big = estimate_lipschitz(gen, method, batch_size=500, **kwargs)
    odd = estimate_lipschitz(gen, method, batch_size=7, **kwargs)
    assert torch.allclose(_values(one), _values(big), rtol=1e-5, atol=1e-7)
    assert torch.allclose(_values(odd), _values(big), rtol=1e-5, atol=1e-7)
    assert one.generator_evaluations == big.generator_evaluations == odd.generator_evaluations


def test_gradient_beats_sampler_with_a_twentieth_of_the_evaluations():
    gen = TinyMLP(latent_dim=16, side=6, seed=1).eval()
    samp = estimate_lipschitz(gen, "sampling", anchors_per_class=6, neighbors=2000)
    grad = estimate_lipschitz(gen, "gradient", anchors_per_class=6)
    assert (_values(grad) >= _values(samp)).all()
    assert grad.generator_evaluations * 20 <= samp.generator_evaluations
    assert grad.generator_evaluations == 2 * 6 * evaluations_per_anchor(10, 12, 2, latent_dim=16)
    assert samp.generator_evaluations == 2 * 6 * 2001


def test_evaluation_count_matches_forward_calls():
    """Forward decodes seen by the model plus backward passes add up to the reported count."""
    gen = TinyMLP().eval()
    seen = []
    original = gen.decode
    gen.decode = lambda z, y: (seen.append(z.shape[0]), original(z, y))[1]
    n, iters, steps, restarts = 3, 5, 4, 2
    res = estimate_lipschitz(gen, "gradient", anchors_per_class=n, power_iters=iters, ascent_steps=steps,
                             restarts=restarts, classes=[0])
    starts = 1 + restarts
    forwards = n * (1 + iters + 1 + starts * (steps + 1))  # base, Lanczos jvps, Ritz-vector jvp, ascent
    backwards = n * (iters + starts * steps)
    assert sum(seen) == forwards
    assert res.generator_evaluations == forwards + backwards
    assert res.generator_evaluations == evaluations_per_anchor(iters, steps, restarts) * n


def test_both_methods_use_the_same_anchors():
    gen = TinyMLP()
    a = class_anchors(gen, 1, 4, seed=9)
    assert torch.equal(a, class_anchors(gen, 1, 4, seed=9))
    assert not torch.equal(a, class_anchors(gen, 0, 4, seed=9))
    assert not torch.equal(a, class_anchors(gen, 1, 4, seed=10))


class _Detached(TinyMLP):
    def decode(self, z, y):
        return super().decode(z.detach(), y)


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("backward not implemented for this op")


class _RaisesInAutograd(TinyMLP):
    def decode(self, z, y):
        return _NoBackward.apply(super().decode(z, y))


@pytest.mark.parametrize("cls", [_Detached, _RaisesInAutograd])
def test_non_differentiable_decode_is_a_clear_error(cls):
    gen = cls().eval()
    with pytest.raises(UserInputError, match="not differentiable|cannot be differentiated") as info:
        estimate_lipschitz(gen, "gradient", anchors_per_class=2, **FAST)
    assert "--method sampling" in str(info.value) and "\n" not in str(info.value)
    result = estimate_lipschitz(gen, "sampling", anchors_per_class=2, neighbors=10)
    assert all(math.isfinite(v) for v in _values(result).tolist())


def test_mode_and_grad_flags_restored():
    gen = TinyMLP().train()
    gen.net[0].weight.requires_grad_(False)
    estimate_lipschitz(gen, "gradient", anchors_per_class=2, **FAST)
    assert gen.training
    assert not gen.net[0].weight.requires_grad and gen.net[2].weight.requires_grad
    assert gen.net[2].weight.grad is None


@pytest.mark.parametrize("kwargs, flag", [
    ({"method": "exact"}, "lipschitz method 'exact'"), ({"radius": 0.0}, "radius=0.0"),
    ({"radius": math.inf}, "radius=inf"),
    ({"anchors_per_class": 0}, "anchors_per_class=0"), ({"method": "sampling", "neighbors": 0}, "neighbors=0"),
    ({"batch_size": 0}, "batch_size=0"), ({"method": "gradient", "restarts": -1}, "restarts=-1"),
    ({"method": "gradient", "neighbors": 5}, "unknown option"), ({"classes": [5]}, "classes"),
])
def test_bad_arguments_name_the_input(kwargs, flag):
    with pytest.raises(UserInputError, match=flag):
        estimate_lipschitz(TinyMLP(), **kwargs)


class _OldStyleIdentity(torch.autograd.Function):
    """Differentiable backward but no forward-mode rule: torch.func.jvp refuses it."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad


class _NoForwardMode(TinyMLP):
    def decode(self, z, y):
        return _OldStyleIdentity.apply(super().decode(z, y))


def test_jvp_falls_back_to_double_backward_and_counts_it():
    kwargs = {"anchors_per_class": 3, "classes": [1], **FAST}
    plain = estimate_lipschitz(TinyMLP().eval(), "gradient", **kwargs)
    fallback = estimate_lipschitz(_NoForwardMode().eval(), "gradient", **kwargs)
    assert torch.allclose(_values(plain), _values(fallback), rtol=1e-4)
    jvps = min(FAST["power_iters"], 6) + 1  # Lanczos steps (at most latent_dim) + the Ritz-vector check
    assert fallback.generator_evaluations == plain.generator_evaluations + 3 * jvps  # each jvp costs 2, not 1


class _Linear(nn.Module):
    """decode(z, y) = A z + b_y in float64, no clamping: its local constant is ||A||_2 everywhere.

    float64 keeps the test about the mathematics: in float32 a 1-d latent gives neighbours at radii near 0,
    where rounding of G(z') - G(z) inflates the sampler's quotient by more than 1e-5.
    """

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.latent_dim, self.num_classes, self.image_shape = weight.shape[1], 2, (1, weight.shape[0], 1)

    def decode(self, z, y):
        return (z @ self.weight.T + y[:, None].to(z)).reshape(z.shape[0], *self.image_shape)

    def sample_latent(self, n, generator=None, device=None):
        return torch.randn(n, self.latent_dim, generator=generator, device=device or "cpu",
                           dtype=torch.float64)


@settings(max_examples=8)
@given(latent_dim=st.integers(1, 12), pixels=st.integers(1, 12), seed=st.integers(0, 10_000),
       scale=st.floats(0.01, 10.0))
def test_linear_maps_gradient_exact_sampler_below(latent_dim, pixels, seed, scale):
    rng = torch.Generator().manual_seed(seed)
    weight = scale * torch.randn(pixels, latent_dim, generator=rng, dtype=torch.float64)
    true = float(torch.linalg.matrix_norm(weight, ord=2))
    gen = _Linear(weight)
    grad = _values(estimate_lipschitz(gen, "gradient", anchors_per_class=2, seed=seed, **FAST))
    samp = _values(estimate_lipschitz(gen, "sampling", anchors_per_class=2, neighbors=50, seed=seed))
    assert torch.allclose(grad, torch.full_like(grad, true), rtol=1e-4, atol=0)
    assert (samp <= true * (1 + 1e-5)).all()
