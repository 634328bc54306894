"""``latent`` is never larger than the paper's C&W from the same latents, on any example.

The reference is an independent implementation of the paper's procedure with ``torch.optim.Adam`` (lr 0.01,
4 binary-search steps x 100 iterations on the constant, starting at 1, the best adversarial iterate).
"""

from __future__ import annotations

import torch
from torch import nn

from intrinsic_robustness.attacks import LatentAttack, margin
from intrinsic_robustness.modes import frozen


def paper_cw(model: nn.Module, gen: nn.Module, x: torch.Tensor, y: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    n = len(x)
    lower, upper, const = torch.zeros(n), torch.full((n,), 1e10), torch.ones(n)
    best = torch.full((n,), float("inf"))
    for _ in range(4):
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=0.01)
        success = torch.zeros(n, dtype=torch.bool)
        for _ in range(100):
            opt.zero_grad()
            xa = gen.decode(z, y)
            logits = model(xa)
            dist2 = (xa - x).flatten(1).pow(2).sum(1)
            (dist2 + const * margin(logits, y).clamp_min(0)).sum().backward()
            with torch.no_grad():
                wrong = logits.argmax(1) != y
                best = torch.where(wrong, torch.minimum(best, dist2.sqrt()), best)
                success |= wrong
            opt.step()
        upper = torch.where(success, torch.minimum(upper, const), upper)
        lower = torch.where(success, lower, torch.maximum(lower, const))
        const = torch.where(upper < 1e9, (lower + upper) / 2, const * 10)
    return best


def test_latent_is_never_larger_than_the_papers_procedure() -> None:
    from intrinsic_robustness.generators import make_affine

    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 3))
    gen = make_affine(latent_dim=8, num_classes=3, height=6, width=6, scale=0.5, seed=0)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(16, 8, generator=g)
    y = torch.arange(16) % 3
    with torch.no_grad():
        x = gen.decode(z, y)
        correct = model(x).argmax(1) == y
    with frozen(model, gen):
        paper = paper_cw(model, gen, x, y, z)
    ours = LatentAttack(gen, num_steps=10)(model, x, y, z=z)
    attacked = correct & torch.isfinite(paper)
    assert attacked.sum() >= 5
    assert (ours.norms[attacked] <= paper[attacked] * (1 + 1e-5)).all()
    cheap = LatentAttack(gen, num_steps=10, paper_search=False)(model, x, y, z=z)
    assert (ours.norms <= cheap.norms + 1e-6).all()  # the paper's search only ever lowers a norm
