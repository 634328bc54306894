"""The attack contract, for every registered attack and every ensemble of them: an example's answer is the same
alone, in a batch and in another batch (its randomness comes from its dataset index only), and the model's and
generator's train/eval modes and ``requires_grad`` flags come back exactly as they were."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from intrinsic_robustness.attacks import ATTACKS, build_attack
from intrinsic_robustness.generators import make_affine

# Cheap settings so the contract runs in seconds; an attack registered later runs with its defaults.
CHEAP = {
    "pgd": {"num_steps": 5, "step_size": 0.1, "restarts": 2},
    "fmn": {"num_steps": 10, "num_targets": 1},
    "autoattack": {"attacks": ("apgd-ce", "square"), "square_queries": 10},
    "latent": {"search_steps": 1, "num_steps": 10, "lr": 0.05},
}
EPS = (0.15, 0.4)


def combinations(threat: str) -> list[tuple[str, ...]]:
    names = ATTACKS.names(threat=threat)
    return [c for k in range(1, len(names) + 1) for c in itertools.combinations(names, k)]


ALL = [(threat, names) for threat in ("unconstrained", "in-distribution") for names in combinations(threat)]


def tiny_cnn(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Dropout(0.1), nn.Flatten(), nn.Linear(64, num_classes))


def _state(*modules: nn.Module) -> list[tuple[bool, ...]]:
    return [(tuple(m.training for m in mod.modules()), tuple(p.requires_grad for p in mod.parameters()))
            for mod in modules]


def _inputs(threat: str) -> tuple[nn.Module, nn.Module | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A model in a mixed train/eval, requires_grad state; 6 examples (with latents for in-distribution)."""
    if threat == "in-distribution":
        gen = make_affine(scale=0.05)
        model = tiny_cnn(gen.num_classes)
        y = torch.arange(6) % gen.num_classes
        z = torch.randn(6, gen.latent_dim, generator=torch.Generator().manual_seed(3))
        x = gen.decode(z, y).detach()
        gen.train()
        gen.weight.requires_grad_(False)
    else:
        gen, z = None, None
        model = tiny_cnn(4)  # four classes: AutoAttack keeps its DLR-based members
        x = 0.3 + 0.4 * torch.rand(6, 1, 6, 6, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            y = model.eval()(x).argmax(dim=1)
    model.train()
    model[2].eval()  # a submodule left in eval mode must stay so
    model[0].weight.requires_grad_(False)
    return model, gen, x, y, z


@pytest.mark.parametrize("threat, names", ALL, ids=["+".join(n) for _, n in ALL])
def test_same_answer_alone_or_in_any_batch_and_state_restored(threat: str, names: tuple[str, ...]) -> None:
    _check_contract(threat, names, {n: CHEAP[n] for n in names if n in CHEAP})


@pytest.mark.parametrize("members", [("apgd-ce",), ("square",)])
def test_each_autoattack_member_keeps_the_contract(members: tuple[str, ...]) -> None:
    """Square's random search shows a batch-dependent seed at once (APGD's L2 points sit on the eps sphere);
    seeding AutoAttack from a batch's first example, as before, fails here. (APGD-T and FAB-T share the
    per-example seeding and cost 25 s more here, so they are left to the full runs.)"""
    _check_contract("unconstrained", ("autoattack",), {"autoattack": {"attacks": members, "square_queries": 20}})


def _check_contract(threat: str, names: tuple[str, ...], options: dict) -> None:
    model, gen, x, y, z = _inputs(threat)
    attack = build_attack(list(names), threat, eps=EPS, generator=gen, options=options)
    kwargs = {"eps": EPS[1]} if attack.budgeted else {}
    before = _state(model, *([gen] if gen is not None else []))
    rows = torch.arange(6)

    def run(idx: torch.Tensor):
        return attack(model, x[idx], y[idx], seed=7, index=idx, z=None if z is None else z[idx], **kwargs)

    batch = run(rows)
    other = run(torch.tensor([5, 3, 1, 0]))  # another batch: other neighbours, other positions
    for i in range(6):
        alone = run(rows[i:i + 1])
        assert bool(alone.success[0]) == bool(batch.success[i]), (names, i)
        assert torch.allclose(alone.norms[0], batch.norms[i], rtol=1e-4, atol=1e-5), (names, i)
    for pos, i in enumerate([5, 3, 1, 0]):
        assert bool(other.success[pos]) == bool(batch.success[i]), (names, i)
        assert torch.allclose(other.norms[pos], batch.norms[i], rtol=1e-4, atol=1e-5), (names, i)
    assert _state(model, *([gen] if gen is not None else [])) == before, "modes or requires_grad not restored"
    assert batch.norms.shape == (6,) and bool((batch.norms >= 0).all())


def test_every_registered_attack_is_covered() -> None:
    covered = {n for _, names in ALL for n in names}
    assert covered == set(ATTACKS.names())
    assert any(len(names) > 1 for _, names in ALL), "no ensemble tried"


def test_autoattack_leaves_the_global_rng_alone() -> None:
    model, _, x, y, _ = _inputs("unconstrained")
    attack = build_attack("autoattack", "unconstrained", eps=EPS, options={"autoattack": CHEAP["autoattack"]})
    state = torch.random.get_rng_state()
    attack(model, x, y, eps=EPS[1])
    assert torch.equal(state, torch.random.get_rng_state())
