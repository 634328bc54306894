"""Synthetic datasets from generator specs: exact round trip, manifest provenance, determinism, failures."""

from __future__ import annotations

import pytest
import torch

from intrinsic_robustness.api import generate as generate_from_spec
from intrinsic_robustness.data.synthetic import generate_dataset, load_dataset, parse_priors
from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.generators.affine import make_affine
from intrinsic_robustness.generators.load import load_generator, save_generator
from intrinsic_robustness.hashing import state_checksum


@pytest.fixture
def acgan_dir(tmp_path):
    torch.manual_seed(5)
    gen = ACGANGenerator(latent_dim=6, num_classes=4, image_shape=(1, 8, 8), width=4, hidden=8)
    gen.train()  # move the batch-norm running statistics away from their defaults
    with torch.no_grad():
        gen.decode(torch.randn(64, 6), torch.arange(64) % 4)
    save_generator(gen.eval(), tmp_path / "gen", gen.config())
    return tmp_path / "gen"


class _FailsOnBigBatches(torch.nn.Module):
    """Meets the contract for the checker's 4 samples, then returns out-of-range pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_affine(latent_dim=4, num_classes=2, height=3, width=3)
        self.latent_dim, self.num_classes, self.image_shape = 4, 2, (1, 3, 3)

    def decode(self, z, y):
        x = self.inner.decode(z, y)
        return x + 5.0 if z.shape[0] > 4 else x

    def sample_latent(self, n, generator=None, device=None):
        return self.inner.sample_latent(n, generator, device)


def fails_on_big_batches() -> torch.nn.Module:
    return _FailsOnBigBatches()


def test_round_trip_reproduces_images_and_records_provenance(tmp_path, acgan_dir):
    manifest = generate_from_spec(str(acgan_dir), tmp_path / "ds", 30, 10, seed=1, batch_size=7, device="cpu")
    gen = load_generator(str(acgan_dir))
    assert manifest["generator"]["spec"] == str(acgan_dir)
    assert manifest["generator"]["weights_sha256"] == state_checksum(gen.state_dict())
    assert manifest["splits"]["train"]["counts"] == [8, 8, 7, 7]
    for split, n in (("train", 30), ("test", 10)):
        ds = load_dataset(tmp_path / "ds", split, verify=True)
        assert len(ds) == n and ds.images.dtype == torch.float32
        with torch.no_grad():
            again = gen.decode(ds.latents, ds.labels)
        assert (again - ds.images).abs().max() <= 1e-6
        x, y, z = ds[0]
        assert x.shape == (1, 8, 8) and z.shape == (6,) and y.dtype == torch.int64


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = generate_from_spec("affine", tmp_path / "a", 12, 4, seed=3, device="cpu")
    b = generate_from_spec("affine", tmp_path / "b", 12, 4, seed=3, device="cpu")
    c = generate_from_spec("affine", tmp_path / "c", 12, 4, seed=4, device="cpu")
    sha = [m["splits"]["train"]["shards"][0]["sha256"] for m in (a, b, c)]
    assert sha[0] == sha[1] != sha[2]


def test_priors_are_used_and_validated(tmp_path):
    manifest = generate_from_spec("affine", tmp_path / "p", 300, 10, seed=0, priors=[0.8, 0.2, 0.0],
                                  device="cpu")
    counts = manifest["splits"]["train"]["counts"]
    assert counts[2] == 0 and 200 < counts[0] < 280
    with pytest.raises(UserInputError, match="2 values for a generator with 3 classes"):
        generate_from_spec("affine", tmp_path / "q", 10, 0, seed=0, priors=[0.5, 0.5], device="cpu")
    assert parse_priors("0.25, 0.75") == [0.25, 0.75] and parse_priors(None) is None
    with pytest.raises(UserInputError, match="--priors"):
        parse_priors("a,b")


def test_existing_output_needs_force(tmp_path):
    generate_from_spec("affine", tmp_path / "d", 6, 3, seed=0, device="cpu")
    with pytest.raises(UserInputError, match="--force"):
        generate_from_spec("affine", tmp_path / "d", 6, 3, seed=1, device="cpu")
    manifest = generate_from_spec("affine", tmp_path / "d", 6, 3, seed=1, device="cpu", overwrite=True)
    assert manifest["seed"] == 1


def test_failure_midway_leaves_nothing_behind(tmp_path):
    with pytest.raises(UserInputError, match="outside \\[0, 1\\]"):
        generate_from_spec(f"{__name__}:fails_on_big_batches", tmp_path / "out", 20, 5, seed=0,
                           batch_size=10, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_chunked_shards(tmp_path):
    gen = make_affine()
    manifest = generate_dataset(gen, tmp_path / "s", 25, 0, seed=0, batch_size=4, shard_size=10)
    assert [s["n"] for s in manifest["splits"]["train"]["shards"]] == [10, 10, 5]
    assert len(load_dataset(tmp_path / "s", "train")) == 25
