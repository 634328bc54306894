"""The per-example ball sampler the attacks start from: uniform in each example's own L2 ball, batch-independent.

Uniform in the d-ball of radius eps means (||x|| / eps)^d ~ U(0, 1) and x / ||x|| uniform on the sphere
(every orthant equally likely: the trap of sampling |N(0, I)| or U[0,1]^d directions).
"""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from intrinsic_robustness.attacks.base import per_example_uniform_ball
from intrinsic_robustness.runtime import make_generator
from intrinsic_robustness.threat import l2_norm, uniform_ball

N, SHAPE = 3000, (1, 2, 3)  # d = 6
D = 6


def _rngs(n: int, offset: int = 0) -> list[torch.Generator]:
    return [make_generator(1000 + offset + i) for i in range(n)]


@pytest.fixture(scope="module")
def draws() -> tuple[torch.Tensor, torch.Tensor]:
    eps = torch.linspace(0.1, 3.0, N)
    return per_example_uniform_ball(_rngs(N), SHAPE, eps, torch.device("cpu")), eps


def test_points_lie_in_their_own_ball_with_uniform_radius(draws) -> None:
    x, eps = draws
    assert x.shape == (N, *SHAPE)
    ratio = l2_norm(x) / eps
    assert (ratio <= 1 + 1e-6).all()
    assert stats.kstest((ratio ** D).numpy(), "uniform").pvalue > 1e-3


def test_directions_are_uniform_on_the_sphere(draws) -> None:
    x, _ = draws
    u = x.flatten(1) / l2_norm(x)[:, None]
    assert u.mean(0).abs().max() < 4 / N ** 0.5  # no preferred direction (E u = 0)
    second = (u ** 2).mean(0)  # E u_j^2 = 1/d for each coordinate
    assert (second - 1 / D).abs().max() < 0.02
    positive = (u > 0).float().mean(0)  # each half-space equally likely (an orthant sampler fails here)
    assert (positive - 0.5).abs().max() < 4 * 0.5 / N ** 0.5
    # a single coordinate of a uniform direction: (u_j + 1) / 2 ~ Beta((d-1)/2, (d-1)/2)
    assert stats.kstest(((u[:, 0] + 1) / 2).numpy(), stats.beta((D - 1) / 2, (D - 1) / 2).cdf).pvalue > 1e-3


def test_each_row_depends_only_on_its_own_generator() -> None:
    eps = torch.tensor([0.5, 1.0, 2.0, 0.25])
    batch = per_example_uniform_ball(_rngs(4), SHAPE, eps, torch.device("cpu"))
    for i in range(4):
        alone = per_example_uniform_ball([make_generator(1000 + i)], SHAPE, eps[i:i + 1], torch.device("cpu"))
        assert torch.equal(batch[i], alone[0])
    reordered = per_example_uniform_ball(_rngs(4)[::-1], SHAPE, eps.flip(0), torch.device("cpu"))
    assert torch.equal(reordered.flip(0), batch)


def test_one_generator_for_a_batch_is_uniform_too() -> None:
    x = uniform_ball((N, D), 2.0, generator=make_generator(7))
    ratio = l2_norm(x) / 2.0
    assert (ratio <= 1 + 1e-6).all()
    assert stats.kstest((ratio ** D).numpy(), "uniform").pvalue > 1e-3
