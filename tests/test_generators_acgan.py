"""ACGAN architecture, its training loop on digits (tiny widths), checkpoint resume and the fidelity figure."""

from __future__ import annotations

import pytest
import torch

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import check_generator
from intrinsic_robustness.generators.acgan import ACGANDiscriminator, ACGANGenerator, build_acgan
from intrinsic_robustness.generators.load import load_generator
from intrinsic_robustness.generators.train import train_acgan
from intrinsic_robustness.weights import optimizer_tensors, restore_optimizer

TINY = {"width": 4, "hidden": 16, "batch_size": 16, "max_batches": 2, "fidelity_epochs": 1,
        "fidelity_per_class": 5, "latent_dim": 8}


def test_paper_architecture_shapes_and_range():
    gen = ACGANGenerator()
    assert (gen.latent_dim, gen.num_classes, gen.image_shape) == (100, 10, (1, 28, 28))
    # the paper's layer sizes: [z, onehot] -> 1024 -> 128*7*7 -> 64 x 14 x 14 -> 1 x 28 x 28
    assert gen.fc[0].in_features == 110 and gen.fc[0].out_features == 1024
    assert gen.fc[3].out_features == 128 * 7 * 7
    gen.eval()
    z, y = gen.sample_latent(6, generator=torch.Generator().manual_seed(1)), torch.arange(6) % 10
    x = gen.decode(z, y)
    assert x.shape == (6, 1, 28, 28)
    assert x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(x, (gen.raw(z, y) + 1) / 2)
    check_generator(gen)


def test_rgb_variant_and_discriminator():
    gen = ACGANGenerator(latent_dim=16, num_classes=3, image_shape=(3, 32, 32), width=8, hidden=32).eval()
    check_generator(gen)
    disc = ACGANDiscriminator(num_classes=3, image_shape=(3, 32, 32), width=8, hidden=32).eval()
    adv, cls = disc(gen.decode(gen.sample_latent(4), torch.tensor([0, 1, 2, 0])))
    assert adv.shape == (4,) and cls.shape == (4, 3)
    rebuilt = build_acgan(gen.config())
    assert rebuilt.config() == gen.config()


def test_bad_image_shape_is_rejected():
    with pytest.raises(ValueError, match="multiples of 4"):
        ACGANGenerator(image_shape=(1, 30, 30))


def test_optimizer_state_round_trip_through_tensors():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, groups = optimizer_tensors(opt, "opt")
    fresh = torch.optim.Adam(model.parameters(), lr=5.0)
    restore_optimizer(fresh, "opt", tensors, groups)
    a, b = opt.state_dict(), fresh.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for index, state in a["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(b["state"][index][key], value)


def test_short_epoch_on_digits_writes_a_loadable_generator(tmp_path):
    out = tmp_path / "acgan"
    summary = train_acgan("digits", out, epochs=1, **TINY)
    assert summary["epochs_done"] == 1 and len(summary["history"]) == 1
    for name in ("generator.json", "generator.safetensors", "checkpoint.safetensors", "training.json",
                 "samples.png", "samples/epoch-0001.png"):
        assert (out / name).is_file(), name
    fid = summary["fidelity"]
    assert 0.0 <= fid["generated_accuracy"] <= 1.0 and 0.0 <= fid["real_test_accuracy"] <= 1.0
    assert len(fid["generated_class_accuracy"]) == 10
    gen = load_generator(str(out))
    assert gen.image_shape == (1, 28, 28) and gen.latent_dim == 8
    assert not list(out.glob("**/*.tmp"))


def _weights(path):
    gen = load_generator(str(path))
    return {k: v.clone() for k, v in gen.state_dict().items()}


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train_acgan("digits", straight, epochs=2, **TINY)

    resumed = tmp_path / "resumed"
    import intrinsic_robustness.generators.train as train_module

    real_epoch = train_module._train_epoch
    calls = {"n": 0}

    def dies_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "_train_epoch", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_acgan("digits", resumed, epochs=2, **TINY)
    monkeypatch.setattr(train_module, "_train_epoch", real_epoch)
    assert not list(resumed.glob("**/*.tmp"))
    load_generator(str(resumed))  # epoch 1 is complete and loadable

    summary = train_acgan("digits", resumed, epochs=2, **TINY)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_with_different_options_is_refused(tmp_path):
    out = tmp_path / "run"
    train_acgan("digits", out, epochs=1, **TINY)
    with pytest.raises(UserInputError, match="lr"):
        train_acgan("digits", out, epochs=2, **{**TINY, "lr": 1e-3})
    summary = train_acgan("digits", out, epochs=1, **{**TINY, "lr": 1e-3}, force=True)
    assert summary["config"]["lr"] == 1e-3


def test_bad_training_options():
    with pytest.raises(UserInputError, match="--epochs"):
        train_acgan("digits", "unused", epochs=0)
    with pytest.raises(UserInputError, match="dataset"):
        train_acgan("cifar-100", "unused", epochs=1)
