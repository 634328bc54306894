"""One concept, one spelling: randomness only through runtime, the training fingerprint a digest of the data."""

from __future__ import annotations

import torch

from intrinsic_robustness.runtime import derive_seed, make_generator, seeded, stage_generator
from intrinsic_robustness.training.loop import _settings
from intrinsic_robustness.training.objectives import paper_recipe


def test_stage_generator_is_make_generator_of_the_derived_seed() -> None:
    a = torch.rand(5, generator=stage_generator(3, "dataset", "train"))
    b = torch.rand(5, generator=make_generator(derive_seed(3, "dataset", "train")))
    assert torch.equal(a, b)
    assert not torch.equal(a, torch.rand(5, generator=stage_generator(3, "dataset", "test")))


def test_seeded_repeats_the_global_draws_and_restores_the_state() -> None:
    torch.manual_seed(11)
    expected_next = torch.rand(3)
    torch.manual_seed(11)
    with seeded(5):
        first = torch.nn.Linear(4, 2).weight.detach().clone()  # an initialiser draws from the global RNG
    with seeded(5):
        again = torch.nn.Linear(4, 2).weight.detach().clone()
    assert torch.equal(first, again)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's stream is as if nothing had happened


def _fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    recipe = paper_recipe("standard", tuple(x.shape[1:]))
    return _settings(recipe, 0, 0, 1.0, 1, x, y, 2)["fingerprint"]


def test_the_training_fingerprint_sees_data_a_sum_cannot() -> None:
    x = torch.rand(6, 1, 3, 3, generator=make_generator(0))
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    swapped = x.clone()
    swapped[0, 0, 0, 0], swapped[1, 0, 0, 0] = x[1, 0, 0, 0], x[0, 0, 0, 0]  # same sum, other images
    relabelled = torch.tensor([1, 0, 0, 1, 0, 1])  # same label sum, other labels
    base = _fingerprint(x, y)
    assert base == _fingerprint(x.clone(), y.clone())
    assert base != _fingerprint(swapped, y) and base != _fingerprint(x, relabelled)
