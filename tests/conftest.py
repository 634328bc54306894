"""Shared fixtures: tiny seeded models and oracles; hypothesis without deadlines (CPU timing varies)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

settings.register_profile("irob", deadline=None, max_examples=60, derandomize=True)
settings.load_profile("irob")

# Tiny models run faster and steadier on one thread (two threads on a 2-core machine oversubscribe
# as soon as anything else runs; measured 7x slower for a small training run).
torch.set_num_threads(1)


@pytest.fixture
def affine_generator():
    """A seeded affine reference generator clamp(A z + b_y): 8-d latent, 3 classes, 1x6x6 images."""
    from intrinsic_robustness.generators import make_affine

    return make_affine(latent_dim=8, num_classes=3, height=6, width=6, scale=0.05, seed=0)


@pytest.fixture(autouse=True)
def _seed_torch():
    torch.manual_seed(0)
    yield
