"""Generator specs: saved directories, module:factory (+ weights), names; strict weights; contract checks."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.generators.affine import AffineGenerator, make_affine
from intrinsic_robustness.generators.load import load_generator, save_generator
from intrinsic_robustness.hashing import state_checksum
from intrinsic_robustness.weights import load_state_strict

SPEC = f"{__name__}:"


def tiny_acgan() -> ACGANGenerator:
    """Factory used through a 'module:factory' spec."""
    torch.manual_seed(3)
    return ACGANGenerator(latent_dim=6, num_classes=4, image_shape=(1, 8, 8), width=4, hidden=8)


class _Broken(torch.nn.Module):
    """An affine generator with one contract violation switched on."""

    def __init__(self, fault: str) -> None:
        super().__init__()
        self.inner = make_affine(latent_dim=4, num_classes=2, height=3, width=3)
        self.fault = fault
        self.latent_dim, self.num_classes, self.image_shape = 4, 2, (1, 3, 3)

    def sample_latent(self, n, generator=None, device=None):
        if self.fault == "latent_shape":
            return torch.randn(n, 5, generator=generator)
        return self.inner.sample_latent(n, generator, device)

    def decode(self, z, y):
        x = self.inner.decode(z, y)
        if self.fault == "shape":
            return x.flatten(1)
        if self.fault == "range":
            return 2 * x - 1
        if self.fault == "detached":
            return x.detach()
        if self.fault == "random":
            return (x + 0.01 * torch.rand_like(x)).clamp(0, 1)
        return x


class _NoDecode(torch.nn.Module):
    latent_dim, num_classes, image_shape = 4, 2, (1, 3, 3)

    def sample_latent(self, n, generator=None, device=None):
        return torch.randn(n, 4, generator=generator)


def broken(fault: str = "range") -> torch.nn.Module:
    return _NoDecode() if fault == "no_decode" else _Broken(fault)


def not_a_module():
    return object()


def test_directory_round_trip_reproduces_outputs(tmp_path):
    gen = tiny_acgan().eval()
    save_generator(gen, tmp_path / "g", gen.config())
    config = json.loads((tmp_path / "g" / "generator.json").read_text())
    assert config["architecture"] == "acgan" and config["weights_sha256"] == state_checksum(gen.state_dict())
    loaded = load_generator(str(tmp_path / "g"))
    z, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 3, 0])
    torch.testing.assert_close(loaded.decode(z, y), gen.decode(z, y), rtol=0, atol=0)


def test_affine_directory_and_name(tmp_path):
    gen = make_affine(latent_dim=5, num_classes=3, height=4, width=4, seed=7)
    save_generator(gen, tmp_path / "aff", {"architecture": "affine", "latent_dim": 5, "num_classes": 3,
                                           "image_shape": [1, 4, 4]})
    loaded = load_generator(str(tmp_path / "aff"))
    assert isinstance(loaded, AffineGenerator)
    torch.testing.assert_close(loaded.weight, gen.weight)
    assert isinstance(load_generator("affine"), AffineGenerator)


def test_factory_spec_with_safetensors_and_torch_weights(tmp_path):
    trained = tiny_acgan()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1)
    trained.eval()
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(tmp_path / "w.safetensors"))
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    z, y = torch.randn(3, 6), torch.tensor([1, 2, 3])
    for weights in ("w.safetensors", "w.pt"):
        gen = load_generator(SPEC + "tiny_acgan", weights=str(tmp_path / weights))
        torch.testing.assert_close(gen.decode(z, y), trained.decode(z, y), rtol=0, atol=0)
    gen = load_generator(SPEC + "tiny_acgan")
    assert not torch.equal(gen.decode(z, y), trained.decode(z, y))


def test_missing_and_unexpected_keys_are_one_line(tmp_path):
    state = tiny_acgan().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.0.weight"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(UserInputError) as info:
        load_generator(SPEC + "tiny_acgan", weights=str(tmp_path / "bad.pt"))
    message = str(info.value)
    assert "\n" not in message
    assert "1 missing key(s) (fc.0.weight)" in message and "1 unexpected key(s) (extra.weight)" in message


def test_wrong_shape_and_unreadable_weights(tmp_path):
    state = tiny_acgan().state_dict()
    state["fc.0.bias"] = torch.zeros(3)
    with pytest.raises(UserInputError, match="wrong shape.*fc.0.bias"):
        load_state_strict(tiny_acgan(), state)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserInputError, match="weights_only=True"):
        load_generator(SPEC + "tiny_acgan", weights=str(tmp_path / "junk.pt"))
    with pytest.raises(UserInputError, match="not found"):
        load_generator(SPEC + "tiny_acgan", weights=str(tmp_path / "absent.pt"))


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"fc.0.weight": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserInputError, match="weights_only"):
        load_generator(SPEC + "tiny_acgan", weights=str(tmp_path / "evil.pt"))


@pytest.mark.parametrize("spec, match", [
    ("no_such_module_xyz:make", "cannot import"),
    (SPEC + "missing_factory", "no callable"),
    (SPEC + "not_a_module", "expected a torch.nn.Module"),
    ("just-a-name", "expected a directory saved by irob"),
    ("./missing/dir", "not a directory written by irob"),
])
def test_bad_specs(spec, match):
    with pytest.raises(UserInputError, match=match):
        load_generator(spec)


def test_directory_without_config_and_unknown_architecture(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no generator.json"):
        load_generator(str(tmp_path / "empty"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "generator.json").write_text(json.dumps({"architecture": "vae"}))
    with pytest.raises(UserInputError, match="unknown architecture 'vae'"):
        load_generator(str(tmp_path / "odd"))


@pytest.mark.parametrize("fault, match", [
    ("shape", "decode returned shape"),
    ("range", "expected \\[0, 1\\]"),
    ("detached", "differentiabl"),
    ("random", "not deterministic"),
    ("latent_shape", "sample_latent"),
    ("no_decode", "missing 'decode'"),
])
def test_contract_check_catches_each_broken_generator(fault, match):
    from intrinsic_robustness.plugins import build_from_factory

    assert build_from_factory(SPEC + "broken", fault="none") is not None
    torch.manual_seed(0)
    with pytest.raises(UserInputError, match=match):
        from intrinsic_robustness.generators import check_generator

        check_generator(broken(fault))


def test_load_generator_runs_the_contract_check():
    with pytest.raises(UserInputError, match="expected \\[0, 1\\]"):
        load_generator(SPEC + "broken")
