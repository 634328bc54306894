"""Certified Lipschitz bounds against the truth: exact norms, closed forms, dense searches and estimators.

Invariants on every anchor of every test generator: gradient estimate <= certified local <= certified
global, local non-decreasing in the radius, and local >= every quotient and Jacobian norm found by dense
sampling in the ball (latent 2-3). Spectral bounds are checked against exact SVDs of small random layers.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import make_affine
from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.lipschitz import class_anchors, estimate_lipschitz
from intrinsic_robustness.lipschitz.certified import (
    LocalSettings,
    certified_global,
    certified_local,
    certified_local_curve,
    extract_chain,
)
from intrinsic_robustness.lipschitz.certified.global_bound import analyse
from intrinsic_robustness.lipschitz.certified.local_bound import anchor_pass, quotient_bound
from intrinsic_robustness.lipschitz.certified.pieces import Activation, ConvPiece, NonnegPiece
from intrinsic_robustness.lipschitz.certified.relax import preactivation_boxes
from intrinsic_robustness.lipschitz.certified.spectral import (
    StreamNorm,
    conv_norm_bound,
    dense_matrix,
    gram_iteration_bound,
    nonneg_norm_bound,
    piece_norm,
)

F64 = torch.zeros((), dtype=torch.float64)
TOL = 1e-5  # relative slack for float32 estimators against float64 bounds


class SeqGen(nn.Module):
    """decode(z, y) = net([z, one_hot(y)]) reshaped to ``image_shape`` (a user-style generator)."""

    def __init__(self, net: nn.Module, latent_dim: int, num_classes: int, image_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.latent_dim, self.num_classes, self.image_shape = net, latent_dim, num_classes, image_shape

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, F.one_hot(y, self.num_classes).to(z)], dim=1)
        return self.net(h).reshape(z.shape[0], *self.image_shape)

    def sample_latent(self, n, generator=None, device=None):  # noqa: ANN001, ANN201
        return torch.randn(n, self.latent_dim, generator=generator, device=device or "cpu")


def relu_mlp(latent_dim: int, seed: int, width: int = 12, out: int = 4, head: str = "sigmoid") -> SeqGen:
    torch.manual_seed(seed)
    layers = [nn.Linear(latent_dim + 2, width), nn.ReLU(), nn.Linear(width, width), nn.LeakyReLU(0.1),
              nn.Linear(width, out)]
    layers.append({"sigmoid": nn.Sigmoid(), "clamp": nn.Hardtanh(0.0, 1.0), "tanh": nn.Tanh()}[head])
    return SeqGen(nn.Sequential(*layers), latent_dim, 2, (1, out, 1)).eval()


def tanh_mlp(latent_dim: int, seed: int) -> SeqGen:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(latent_dim + 2, 10), nn.Tanh(), nn.Linear(10, 6), nn.Sigmoid())
    return SeqGen(net, latent_dim, 2, (1, 2, 3)).eval()


def small_acgan(latent_dim: int, seed: int, trained_like: bool) -> ACGANGenerator:
    """A tiny ACGAN; 'trained-like' weights: larger weights, BN statistics measured on its own activations
    and random BN affine parameters, so pre-activations are O(1) and many ReLUs change state nearby."""
    torch.manual_seed(seed)
    gen = ACGANGenerator(latent_dim, 3, (1, 8, 8), width=4, hidden=16)
    if trained_like:
        gen.train()
        with torch.no_grad():
            for m in gen.modules():
                if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                    m.momentum = None
                    m.reset_running_stats()
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.3, 0.3)
                elif isinstance(m, nn.Linear | nn.ConvTranspose2d):
                    m.weight.mul_(25.0)
            for _ in range(3):
                gen.decode(torch.randn(256, latent_dim), torch.randint(0, 3, (256,)))
    return gen.eval()


GENERATORS = {
    "affine": lambda: make_affine(latent_dim=5, num_classes=2, height=3, width=3, scale=0.3, seed=1),
    "tanh": lambda: tanh_mlp(4, 0),
    "relu": lambda: relu_mlp(3, 1),
    "relu-clamp": lambda: relu_mlp(2, 2, head="clamp"),
    "acgan-random": lambda: small_acgan(4, 3, trained_like=False),
    "acgan-trained": lambda: small_acgan(5, 4, trained_like=True),
}


def jacobian_norms(gen: nn.Module, z: torch.Tensor, label: int) -> torch.Tensor:
    """||J(z_i)||_2 for every row z_i (float64 copy of the generator)."""
    g64 = _double(gen)
    y = torch.full((1,), label)
    jac = torch.func.vmap(torch.func.jacrev(lambda v: g64.decode(v[None], y).flatten()))(z.double())
    return torch.linalg.matrix_norm(jac, ord=2)


def _double(gen: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(gen).double().eval()


def quotients(gen: nn.Module, z: torch.Tensor, points: torch.Tensor, label: int) -> torch.Tensor:
    g64 = _double(gen)
    with torch.no_grad():
        x0 = g64.decode(z[None].double(), torch.full((1,), label)).flatten()
        x = g64.decode(points.double(), torch.full((points.shape[0],), label)).flatten(1)
    return (x - x0).norm(dim=1) / (points.double() - z.double()).norm(dim=1)


def ball_points(z: torch.Tensor, radius: float, n: int, seed: int) -> torch.Tensor:
    rng = torch.Generator().manual_seed(seed)
    d = torch.randn(n, z.numel(), generator=rng, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    scale = torch.rand(n, 1, generator=rng, dtype=torch.float64) ** (1 / z.numel())
    scale[: n // 4] = 1.0  # a quarter on the sphere, where quotients tend to peak
    return z.double() + radius * scale * d


# ---------------------------------------------------------------- global bound


def test_affine_reference_equals_spectral_norm() -> None:
    for seed, d in [(0, 8), (1, 3), (2, 12)]:
        gen = make_affine(latent_dim=d, num_classes=3, height=4, width=5, scale=0.2, seed=seed)
        for value in certified_global(gen):
            assert value == pytest.approx(gen.spectral_norm, rel=1e-4)


def test_one_layer_tanh_equals_known_global_constant() -> None:
    """G(z) = (tanh(W z + b_y) + 1) / 2 with W of full row rank reaches tanh' = 1 everywhere at some z, so
    its global constant is exactly ||W|| / 2."""
    for seed in range(3):
        torch.manual_seed(seed)
        lin = nn.Linear(6 + 2, 4)
        gen = SeqGen(nn.Sequential(lin, nn.Tanh()), 6, 2, (1, 2, 2))
        with torch.no_grad():
            gen.net = nn.Sequential(lin, nn.Tanh(), _Affine01())
        known = 0.5 * float(torch.linalg.matrix_norm(lin.weight.detach()[:, :6].double(), ord=2))
        for value in certified_global(gen):
            assert known <= value <= known * (1 + 1e-4)


class _Affine01(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1) / 2


@pytest.mark.parametrize("name", ["relu", "relu-clamp", "tanh"])
def test_global_above_dense_grid_search(name: str) -> None:
    gen = GENERATORS[name]()
    d = gen.latent_dim
    axis = torch.linspace(-3, 3, 31 if d == 3 else 121 if d == 2 else 9, dtype=torch.float64)
    grid = torch.cartesian_prod(*[axis] * d) if d > 1 else axis[:, None]
    for label, bound in enumerate(certified_global(gen)):
        norms = jacobian_norms(gen, grid, label)
        assert float(norms.max()) <= bound * (1 + 1e-9)
        step = quotients(gen, grid[0], grid[1:200], label)
        assert float(step.max()) <= bound * (1 + 1e-9)


def test_global_never_above_layerwise_product() -> None:
    for name in GENERATORS:
        gen = GENERATORS[name]()
        with torch.no_grad():
            chain = extract_chain(gen.eval(), 0)
        result = analyse(chain, F64)
        assert result.bound <= result.product * (1 + 1e-12)
        assert result.bound > 0


# ---------------------------------------------------------------- local bound


@pytest.mark.parametrize("name", list(GENERATORS))
def test_gradient_below_local_below_global_and_monotone(name: str) -> None:
    gen = GENERATORS[name]()
    label, n = 1, 3
    anchors = class_anchors(gen, label, n, seed=0)
    glob = certified_global(gen, classes=[label])[0]
    previous = torch.zeros(n, dtype=torch.float64)
    for radius in (0.05, 0.2, 0.6):
        local = certified_local(gen, anchors, label, radius)
        est = estimate_lipschitz(gen, method="gradient", anchors_per_class=n, radius=radius, seed=0,
                                 classes=[label], power_iters=8, ascent_steps=6, restarts=1)
        values = torch.tensor(est.per_class[0].values, dtype=torch.float64)
        assert torch.all(values <= local * (1 + TOL) + 1e-7), (radius, values, local)
        assert torch.all(local <= glob * (1 + 1e-9))
        assert torch.all(local >= previous * (1 - 1e-9)), (radius, previous, local)
        previous = local


@pytest.mark.parametrize("name", ["relu", "relu-clamp", "tanh", "acgan-trained"])
def test_local_above_dense_sampling_in_the_ball(name: str) -> None:
    gen = GENERATORS[name]()
    label = 0
    for i, z in enumerate(class_anchors(gen, label, 2, seed=3)):
        for radius in (0.1, 0.5):
            points = ball_points(z, radius, 600, seed=i)
            sup_j = certified_local(gen, z[None], label, radius, steps=1, refine=0)[0]
            assert float(jacobian_norms(gen, points, label).max()) <= sup_j * (1 + 1e-9)
            quotient = certified_local(gen, z[None], label, radius)[0]
            assert float(quotients(gen, z, points, label).max()) <= quotient * (1 + 1e-9)
            assert quotient <= sup_j * (1 + 1e-12)


@pytest.mark.parametrize("name", ["affine", "tanh", "relu", "acgan-trained"])
def test_local_is_tight_for_tiny_balls(name: str) -> None:
    """As the radius shrinks the bound tends to ||J(z)|| (no slack hidden in the method)."""
    gen = GENERATORS[name]()
    anchors = class_anchors(gen, 0, 3, seed=5)
    local = certified_local(gen, anchors, 0, 1e-5, steps=1, refine=0)
    exact = jacobian_norms(gen, anchors, 0)
    assert torch.all(local >= exact * (1 - 1e-9))
    assert torch.all(local <= exact * 1.001 + 1e-9)


def test_curve_is_non_decreasing_and_matches_single_calls() -> None:
    gen = GENERATORS["acgan-trained"]()
    anchors = class_anchors(gen, 2, 2, seed=1)
    radii = [0.05, 0.1, 0.2, 0.4]
    curve = certified_local_curve(gen, anchors, 2, radii)
    assert curve.shape == (2, 4)
    assert torch.all(curve[:, 1:] >= curve[:, :-1])
    assert torch.all(curve <= certified_global(gen, classes=[2])[0] * (1 + 1e-9))
    single = certified_local(gen, anchors, 2, 0.4)
    assert torch.all(curve[:, -1] <= single * (1 + 1e-12))


def test_quotient_bound_is_an_upper_riemann_sum() -> None:
    sups = {0.1: 2.0, 0.2: 3.0, 0.3: 2.5, 0.4: 7.0}
    # S(0.2) = 3 is replaced by min over larger radii (2.5): (0.1 * 2 + 0.1 * 2.5 + 0.1 * 2.5 + 0.1 * 7) / 0.4
    assert quotient_bound(sups, 0.4) == pytest.approx((0.2 + 0.25 + 0.25 + 0.7) / 0.4)
    assert quotient_bound(sups, 0.2) == pytest.approx((0.2 + 0.25) / 0.2)
    coarse = quotient_bound({0.2: 2.0, 0.4: 7.0}, 0.4)
    assert quotient_bound({0.2: 2.0, 0.3: 4.0, 0.4: 7.0}, 0.4) <= coarse  # refining never hurts
    with pytest.raises(ValueError):
        quotient_bound(sups, 0.25)


def test_settings_trade_tightness_not_soundness() -> None:
    gen = GENERATORS["acgan-trained"]()
    z = class_anchors(gen, 0, 1, seed=2)
    best = certified_local(gen, z, 0, 0.3, settings=LocalSettings(centrings=("midpoint", "anchor")))
    points = ball_points(z[0], 0.3, 600, seed=9)
    found = float(jacobian_norms(gen, points, 0).max())
    for s in (LocalSettings(max_symbols=0, max_columns=0), LocalSettings(gram_cap=1, memory=0),
              LocalSettings(centrings=("anchor",))):
        value = certified_local(gen, z, 0, 0.3, steps=1, refine=0, settings=s)
        assert value[0] >= found * (1 - 1e-9)
        assert value[0] >= best[0] * (1 - 1e-9) or s.centrings == ("anchor",)


def test_preactivation_boxes_contain_sampled_preactivations() -> None:
    gen = GENERATORS["acgan-trained"]()
    chain = extract_chain(gen, 1)
    analysis = analyse(chain, F64)
    first = chain.blocks[0].linear(torch.eye(chain.latent_dim, dtype=torch.float64))
    z = class_anchors(gen, 1, 1, seed=4)[0].double()
    for radius in (0.05, 0.3, 1.0):
        pre, _ = chain.forward(ball_points(z, radius, 2000, seed=1))
        zono = preactivation_boxes(chain, z, radius, first)
        _, rows = anchor_pass(chain, analysis, z, radius, first, "midpoint", LocalSettings())
        for p, box, (lo, hi) in zip(pre, zono, rows, strict=True):
            assert torch.all(p >= box.lo) and torch.all(p <= box.hi)
            assert torch.all(p >= lo) and torch.all(p <= hi)


# ---------------------------------------------------------------- activations


ACTIVATIONS = [Activation("tanh", name="tanh"), Activation("sigmoid", name="sigmoid"),
               Activation("piecewise", (0.0,), (0.0, 1.0), "relu"), Activation("piecewise", (0.0,), (0.2, 1.0)),
               Activation("piecewise", (-1.0, 1.0), (0.0, 1.0, 0.0)), Activation("piecewise", (0.5,), (1.0, 0.0))]


@given(lo=st.floats(-8, 8), width=st.floats(0, 10), which=st.integers(0, len(ACTIVATIONS) - 1))
def test_activation_relaxation_and_derivative_range_are_sound(lo: float, width: float, which: int) -> None:
    act = ACTIVATIONS[which]
    a, b = torch.tensor([lo], dtype=torch.float64), torch.tensor([lo + width], dtype=torch.float64)
    x = torch.linspace(lo, lo + width, 801, dtype=torch.float64)
    lam, mid, half = act.relaxation(a, b)
    gap = act.value(x) - lam * x - mid
    assert float(gap.abs().max()) <= float(half) + 1e-12
    dlo, dhi = act.derivative_range(a, b)
    d = act.derivative(x)
    assert float(d.min()) >= float(dlo) - 1e-12 and float(d.max()) <= float(dhi) + 1e-12
    g_lo, g_hi = act.global_range()
    assert g_lo <= float(dlo) and float(dhi) <= g_hi + 1e-9


# ---------------------------------------------------------------- spectral bounds


def _conv_case(draw_transposed: bool, d: int, ci: int, co: int, k: int, s: int, dil: int, h: int, p: int,
               groups: int) -> ConvPiece | None:
    gen = torch.Generator().manual_seed(ci * 1000 + co * 100 + k * 10 + s + h)
    if draw_transposed:
        w = torch.randn(ci, co // groups, *(k,) * d, generator=gen, dtype=torch.float64)
        func = F.conv_transpose1d if d == 1 else F.conv_transpose2d
        opts = {"stride": s, "padding": p, "output_padding": 0, "groups": groups, "dilation": dil}
    else:
        w = torch.randn(co, ci // groups, *(k,) * d, generator=gen, dtype=torch.float64)
        func = F.conv1d if d == 1 else F.conv2d
        opts = {"stride": s, "padding": p, "dilation": dil, "groups": groups}
    shape = (ci, *(h,) * d)
    try:
        out = func(torch.zeros(1, *shape, dtype=torch.float64), w, None, **opts)
    except RuntimeError:
        return None
    if out.numel() == 0:
        return None
    return ConvPiece("c", shape, tuple(out.shape[1:]), None, weight=w, func=func, options=opts,
                     transposed=draw_transposed)


@settings(max_examples=80)
@given(transposed=st.booleans(), d=st.sampled_from([1, 2]), ci=st.sampled_from([1, 2, 4]),
       co=st.sampled_from([1, 2, 4]), k=st.integers(1, 4), s=st.integers(1, 3), dil=st.integers(1, 2),
       h=st.integers(2, 8), p=st.integers(0, 3), grouped=st.booleans())
def test_conv_bound_above_exact_svd(transposed, d, ci, co, k, s, dil, h, p, grouped) -> None:  # noqa: ANN001
    groups = 2 if grouped and ci % 2 == 0 and co % 2 == 0 else 1
    piece = _conv_case(transposed, d, ci, co, k, s, dil, h, min(p, k - 1), groups)
    if piece is None:
        return
    n_in, n_out = math.prod(piece.in_shape), math.prod(piece.out_shape)
    exact = float(torch.linalg.matrix_norm(dense_matrix(piece.linear_flat, n_in, n_out, F64), ord=2))
    assert conv_norm_bound(piece) >= exact * (1 - 1e-9)
    assert piece_norm(piece, F64) >= exact * (1 - 1e-9)


@pytest.mark.parametrize("ci,co,h", [(16, 8, 7), (8, 1, 14)])
def test_conv_bound_is_tight_on_generator_layers(ci: int, co: int, h: int) -> None:
    """ConvTranspose2d(k=4, s=2, p=1) as in the ACGAN: the FFT bound is within 3% of the exact norm."""
    piece = _conv_case(True, 2, ci, co, 4, 2, 1, h, 1, 1)
    n_in, n_out = math.prod(piece.in_shape), math.prod(piece.out_shape)
    exact = float(torch.linalg.matrix_norm(dense_matrix(piece.linear_flat, n_in, n_out, F64), ord=2))
    assert exact <= conv_norm_bound(piece) <= 1.03 * exact


@settings(max_examples=30)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), seed=st.integers(0, 1000), steps=st.integers(0, 6))
def test_gram_iteration_and_stream_norm_bound_the_exact_norm(rows: int, cols: int, seed: int, steps: int) -> None:
    m = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = float(torch.linalg.matrix_norm(m, ord=2))
    assert exact * (1 - 1e-9) <= gram_iteration_bound(m, steps) <= exact * min(rows, cols) ** (0.5 ** (steps + 1)) \
        * (1 + 2e-6)
    for cap in (1, 8, 64):
        acc = StreamNorm(rows, cols, gram_cap=cap)
        for i in range(0, cols, 7):
            acc.add(m[:, i:i + 7].T)
        assert acc.bound() >= exact * (1 - 1e-9)
        if min(rows, cols) <= cap:
            assert acc.bound() == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("mode,size", [("nearest", (9, 12)), ("area", (3, 2)), ("bilinear", (5, 7)),
                                       ("nearest", (4, 4))])
def test_resize_bound(mode: str, size: tuple[int, int]) -> None:
    shape = (2, 6, 4)
    piece = NonnegPiece(mode, shape, (2, *size), None, func=lambda x: F.interpolate(x, size=size, mode=mode))
    n_in, n_out = math.prod(shape), 2 * size[0] * size[1]
    exact = float(torch.linalg.matrix_norm(dense_matrix(piece.linear_flat, n_in, n_out, F64), ord=2))
    bound = nonneg_norm_bound(piece.linear_flat, n_in, F64)
    assert bound >= exact * (1 - 1e-9)
    if mode == "nearest":
        assert bound == pytest.approx(exact, rel=1e-5)


# ---------------------------------------------------------------- structure extraction


class ConvUser(nn.Module):
    """A user generator with convolutions, resizing, pooling, padding, dropout and assorted activations."""

    latent_dim, num_classes, image_shape = 3, 2, (1, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, 2 * 4 * 4)
        self.body = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2, 3, 3, padding=1),
                                  nn.BatchNorm2d(3), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.ZeroPad2d(1),
                                  nn.Conv2d(3, 2, 3, stride=1, padding=1, padding_mode="reflect"), nn.ReLU6(),
                                  nn.AvgPool2d(2), nn.Upsample(size=(8, 8), mode="bilinear"),
                                  nn.Conv2d(2, 1, 1), nn.Sigmoid())

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, F.one_hot(y, 2).to(z)], 1)).view(z.shape[0], 2, 4, 4)
        return self.body(h)

    def sample_latent(self, n, generator=None, device=None):  # noqa: ANN001, ANN201
        return torch.randn(n, 3, generator=generator, device=device or "cpu")


def test_user_convolutional_generator_is_supported_and_bounded() -> None:
    gen = ConvUser().eval()
    chain = extract_chain(gen, 1)  # verifies the chain against decode
    assert [a.name for a in chain.acts] == ["leaky_relu", "clamp", "sigmoid"]
    bound = certified_global(gen, classes=[1])[0]
    grid = torch.cartesian_prod(*[torch.linspace(-2, 2, 7, dtype=torch.float64)] * 3)
    assert float(jacobian_norms(gen, grid, 1).max()) <= bound
    z = class_anchors(gen, 1, 2, seed=0)
    local = certified_local(gen, z, 1, 0.2)
    assert torch.all(local >= jacobian_norms(gen, z, 1) * (1 - 1e-9)) and torch.all(local <= bound)


class _Residual(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(x)


@pytest.mark.parametrize("layer,word", [(nn.SiLU(), "SiLU"), (nn.LayerNorm(4), "LayerNorm"),
                                        (_Residual(), "_Residual"), (nn.BatchNorm1d(4, track_running_stats=False),
                                                                     "BatchNorm1d"), (nn.Softplus(), "Softplus")])
def test_unsupported_layers_are_refused_in_one_line(layer: nn.Module, word: str) -> None:
    gen = SeqGen(nn.Sequential(nn.Linear(4, 4), layer, nn.Sigmoid()), 2, 2, (1, 2, 2)).eval()
    with pytest.raises(UserInputError) as info:
        certified_global(gen)
    message = str(info.value)
    assert word in message and "supported:" in message and "\n" not in message


def test_bad_arguments_are_one_line_errors() -> None:
    gen = GENERATORS["relu"]()
    z = class_anchors(gen, 0, 2, seed=0)
    calls = [lambda: certified_local(gen, z[:, :2], 0, 0.1), lambda: certified_local(gen, z, 0, 0.0),
             lambda: certified_local(gen, z, 0, float("nan")), lambda: certified_local(gen, z, 5, 0.1),
             lambda: certified_local(gen, z, 0, 0.1, steps=0), lambda: certified_global(gen, classes=[0, 0]),
             lambda: certified_local(gen, z, 0, 0.1, refine=-1),
             lambda: certified_local(gen, z * float("inf"), 0, 0.1), lambda: LocalSettings(centrings=("x",)),
             lambda: certified_global(object())]
    for call in calls:
        with pytest.raises(UserInputError) as info:
            call()
        assert "\n" not in str(info.value)


def test_modes_and_flags_are_restored() -> None:
    gen = GENERATORS["acgan-trained"]()
    gen.train()
    gen.fc[0].weight.requires_grad_(True)
    certified_global(gen, classes=[0])
    certified_local(gen, class_anchors(gen, 0, 1, 0), 0, 0.1)
    assert gen.training and gen.fc[1].training and gen.fc[0].weight.requires_grad
