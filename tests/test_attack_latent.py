"""The in-distribution attack ``latent`` against closed forms at every generator scale and latent size, its
invariance to reparameterising the latent, its per-example contract with default options, and bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intrinsic_robustness.attacks import LatentAttack, build_attack, invert_latents
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.affine import AffineGenerator

SCALES = [0.01, 0.1, 1.0, 10.0, 100.0]
DIMS = [2, 8, 32, 128]


def affine_case(scale: float, latent_dim: int, n: int = 16, side: int = 16, classes: int = 4, seed: int = 0):
    """clamp(A z + 1/2) with ||A||_2 = scale, a linear classifier, points where no pixel can clamp.

    Returns generator, model, x, y, z and the exact in-distribution distance min_j margin_j / ||P_A g_j||.
    """
    g = torch.Generator().manual_seed(seed * 1000 + latent_dim)
    pixels = side * side
    a = torch.randn(pixels, latent_dim, generator=g, dtype=torch.float64)
    a = a / torch.linalg.matrix_norm(a, ord=2)
    base = torch.full((pixels,), 0.5, dtype=torch.float64)
    gen = AffineGenerator((scale * a).float(), base.expand(classes, pixels).float(), (1, side, side))
    u, _, _ = torch.linalg.svd(a, full_matrices=False)
    w = (u @ torch.randn(latent_dim, classes, generator=g, dtype=torch.float64)).T
    w = w + 0.5 * torch.randn(classes, pixels, generator=g, dtype=torch.float64) / pixels ** 0.5
    w = 3 * w / w.norm(dim=1, keepdim=True)
    model = nn.Sequential(nn.Flatten(), nn.Linear(pixels, classes))
    with torch.no_grad():
        model[1].weight.copy_(w.float())
        model[1].bias.copy_(-(w @ base).float())
    # Latents sized so that A z moves pixels by about 0.06: far from the box whatever the scale.
    spread = 0.06 / (scale * float(a.norm(dim=1).mean()))
    z = spread * torch.randn(20 * n, latent_dim, generator=g, dtype=torch.float64)
    x = z @ (scale * a).T + base
    logits = (x - base) @ w.T
    y = logits.argmax(dim=1)
    exact = torch.full((len(z),), float("inf"), dtype=torch.float64)
    for j in range(classes):
        normal = ((w[y] - w[j]) @ u).norm(dim=1)  # ||P_A (w_y - w_j)||
        gap = logits.gather(1, y[:, None]).squeeze(1) - logits[:, j]
        exact = torch.minimum(exact, torch.where(y == j, float("inf"), gap / normal))
    edge = torch.minimum(x, 1 - x).min(dim=1).values
    keep = ((exact > 0.02) & (exact < 0.9 * edge)).nonzero().flatten()[:n]  # the ball never reaches the box
    zk, yk = z[keep].float(), y[keep]
    return gen, model, gen.decode(zk, yk), yk, zk, exact[keep].float()


@pytest.mark.parametrize("latent_dim", DIMS)
@pytest.mark.parametrize("scale", SCALES)
def test_latent_reaches_the_affine_closed_form_at_every_scale(scale: float, latent_dim: int) -> None:
    gen, model, x, y, z, exact = affine_case(scale, latent_dim)
    assert len(x) >= 12
    res = LatentAttack(gen)(model, x, y, z=z)  # the same default budget for every scale and size
    ratio = res.norms / exact
    assert (ratio >= 1 - 1e-4).all(), f"closer than the exact minimum (invalid): {ratio.min():.6f}"
    assert float((ratio <= 1.05).double().mean()) >= 0.95, f"ratios {ratio.tolist()}"
    assert torch.allclose(gen.decode(res.z_adv, y), res.x_adv, atol=1e-6)


class _TinyGenerator(nn.Module):
    """A nonlinear conditional generator (MLP with batch norm, sigmoid output) on a latent scaled by ``gain``."""

    def __init__(self, gain: float = 1.0, latent_dim: int = 6, classes: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.latent_dim, self.num_classes, self.image_shape, self.gain = latent_dim, classes, (1, 5, 5), gain
        self.net = nn.Sequential(nn.Linear(latent_dim + classes, 32), nn.BatchNorm1d(32), nn.Tanh(), nn.Linear(32, 25))

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z * self.gain, nn.functional.one_hot(y, self.num_classes).float()], dim=1)
        return torch.sigmoid(self.net(h)).reshape(-1, 1, 5, 5)


def _tiny_setup(n: int = 8):
    gen = _TinyGenerator().eval()
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(25, 16), nn.ReLU(), nn.Linear(16, 3))
    z = torch.randn(n, 6, generator=torch.Generator().manual_seed(2))
    y = torch.arange(n) % 3
    with torch.no_grad():
        x = gen.decode(z, y)
    return gen, model, x, y, z


@pytest.mark.parametrize("gain", [1e-2, 1e2])
def test_reparameterising_the_latent_leaves_the_answer_unchanged(gain: float) -> None:
    """decode'(z') = decode(z' * gain) with z' = z / gain is the same distribution: same norms (the paper's own
    last search is not scale-free, its Adam lr is in latent units, so it is left out here)."""
    gen, model, x, y, z = _tiny_setup()
    scaled = _TinyGenerator(gain=gain).eval()
    scaled.load_state_dict(gen.state_dict())
    base = LatentAttack(gen, paper_search=False)(model, x, y, z=z)
    other = LatentAttack(scaled, paper_search=False)(model, x, y, z=z / gain)
    assert base.success.any()
    assert torch.equal(base.success, other.success)
    found = base.success
    assert torch.allclose(base.norms[found], other.norms[found], rtol=2e-3)


def test_default_options_keep_the_per_example_contract() -> None:
    gen, model, x, y, z = _tiny_setup()
    gen.train()
    model.train()
    model[1].weight.requires_grad_(False)
    attack = LatentAttack(gen)
    batch = attack(model, x, y, z=z, seed=3)
    for i in (0, 5):
        alone = attack(model, x[i:i + 1], y[i:i + 1], z=z[i:i + 1], seed=3, index=[i])
        assert bool(alone.success[0]) == bool(batch.success[i])
        assert torch.allclose(alone.norms[0], batch.norms[i], rtol=1e-4, atol=1e-6)
    assert gen.training and model.training
    assert not model[1].weight.requires_grad and model[1].bias.requires_grad and model[3].weight.requires_grad
    assert all(p.requires_grad for p in gen.parameters())


def test_search_plans_of_every_length_and_degenerate_generators() -> None:
    gen, model, x, y, z = _tiny_setup(4)
    for steps in (1, 2, 7):  # 7 searches ask for more targets than the 2 other classes: capped
        res = LatentAttack(gen, search_steps=steps, num_steps=10)(model, x, y, z=z)
        assert torch.isfinite(res.x_adv).all()
    flat = AffineGenerator(torch.zeros(25, 3), torch.full((3, 25), 0.5), (1, 5, 5))  # zero Jacobian
    lin = nn.Sequential(nn.Flatten(), nn.Linear(25, 3))
    with torch.no_grad():
        lin[1].weight.normal_()
        lin[1].bias.zero_()
        y0 = lin(flat.decode(torch.zeros(3, 3), torch.zeros(3).long())).argmax(dim=1)
    res = LatentAttack(flat, num_steps=5)(lin, flat.decode(torch.zeros(3, 3), y0), y0, z=torch.zeros(3, 3))
    assert torch.isinf(res.norms).all() and torch.isfinite(res.x_adv).all()


@pytest.mark.parametrize("options", [
    {"num_steps": 0}, {"search_steps": 0}, {"lr": 0.0}, {"damping": 0.0}, {"damping": 2.0},
    {"step_fraction": 1.5}, {"overshoot": 1.0}, {"trust": -1.0},
])
def test_bad_options_are_one_line_errors(options: dict) -> None:
    with pytest.raises(UserInputError) as err:
        LatentAttack(_TinyGenerator(), **options)
    assert "\n" not in str(err.value)


def test_unknown_option_is_refused_by_the_registry() -> None:
    with pytest.raises(UserInputError):
        build_attack("latent", "in-distribution", generator=_TinyGenerator(), options={"latent": {"kappa": 1.0}})


@pytest.mark.parametrize("scale", [0.01, 1.0])
def test_inversion_step_is_scale_free(scale: float) -> None:
    """The same options recover latents of a tiny-gain and a unit-gain affine generator."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 6, generator=g)
    gen = AffineGenerator(scale * a / torch.linalg.matrix_norm(a, ord=2), torch.full((3, 64), 0.5), (1, 8, 8))
    z = 0.2 * torch.randn(4, 6, generator=g) / scale
    y = torch.arange(4) % 3
    x = gen.decode(z, y)
    z_hat, err = invert_latents(gen, x, y, steps=150, restarts=1)
    assert (err < 1e-2).all(), err.tolist()


class _OnceDifferentiable(torch.autograd.Function):
    """x @ W^T whose backward cannot itself be differentiated (as in some custom generator kernels)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return z @ weight.T

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (weight,) = ctx.saved_tensors
        return grad @ weight, None


class _NoDoubleBackward(AffineGenerator):
    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        flat = _OnceDifferentiable.apply(z, self.weight) + self.offsets[y]
        return flat.clamp(0.0, 1.0).reshape(z.shape[0], *self.image_shape)


def test_generators_without_double_backward_still_reach_the_closed_form() -> None:
    gen, model, x, y, z, exact = affine_case(0.1, 8)
    custom = _NoDoubleBackward(gen.weight, gen.offsets, gen.image_shape)
    res = LatentAttack(custom)(model, x, y, z=z)
    ratio = res.norms / exact
    assert (ratio >= 1 - 1e-4).all() and float((ratio <= 1.05).double().mean()) >= 0.95


class _NoForwardMode(torch.autograd.Function):
    """sigmoid with a backward formula but no forward-mode (jvp) one, like many custom operations."""

    @staticmethod
    def forward(ctx, a):
        out = torch.sigmoid(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out * (1 - out)


@pytest.mark.parametrize("forward_mode", [True, False])
@pytest.mark.parametrize("d", [10, 200])
def test_jacobian_rows_in_chunks_equal_the_full_jacobian(d, forward_mode):
    """Large latents (a 784-d flow) are differentiated in chunks of directions, by forward mode where every
    operation has a forward-mode formula and by double backward otherwise; the rows are the same J^T."""
    from intrinsic_robustness.attacks import latent as latent_module

    class Sigmoid(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(d, 20)

        def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            a = self.lin(z)
            return (torch.sigmoid(a) if forward_mode else _NoForwardMode.apply(a)).view(-1, 1, 4, 5)

    torch.manual_seed(0)
    g = Sigmoid().double()
    z, y = torch.randn(d, dtype=torch.float64), torch.zeros(1, dtype=torch.long)
    rows = latent_module._jacobian_rows(g, z, y)
    full = torch.autograd.functional.jacobian(lambda v: g.decode(v[None], y).flatten(), z)
    assert rows.shape == (d, 20) and torch.allclose(rows, full.T, atol=1e-10)
