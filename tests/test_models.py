"""Architectures, save/load round trips and their one-line errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.models import build_architecture, load_classifier, save_classifier


def tiny_factory(num_classes: int = 3, image_shape=(1, 4, 4)) -> nn.Module:
    """A user factory (referenced below as ``tests.test_models:tiny_factory``)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(image_shape).prod()), num_classes))


def fixed_factory() -> nn.Module:
    """A factory that ignores the requested class count (always 3 logits)."""
    return tiny_factory()


def not_a_module():
    return 42


@pytest.mark.parametrize(("name", "shape"), [("wk-small", (1, 28, 28)), ("small-cnn", (1, 28, 28)),
                                             ("big-cnn", (3, 32, 32)), ("wk-small", (3, 32, 32)),
                                             ("mlp-tiny", (1, 4, 4)), ("linear", (2, 5, 3))])
def test_architectures_map_images_to_logits(name, shape):
    model = build_architecture(name, 7, shape)
    assert model(torch.rand(2, *shape)).shape == (2, 7)


def test_paper_architectures_have_the_published_layer_sizes():
    wk = build_architecture("wk-small", 10, (1, 28, 28))
    assert [m.out_channels for m in wk if isinstance(m, nn.Conv2d)] == [16, 32]
    assert [m.in_features for m in wk if isinstance(m, nn.Linear)] == [32 * 7 * 7, 100]
    small = build_architecture("small-cnn", 10, (1, 28, 28))
    assert any(isinstance(m, nn.Dropout) for m in small.modules())
    assert [m.in_features for m in small.modules() if isinstance(m, nn.Linear)] == [64 * 4 * 4, 200, 200]
    big = build_architecture("big-cnn", 10, (3, 32, 32))
    assert [m.in_features for m in big if isinstance(m, nn.Linear)] == [64 * 8 * 8, 512, 512]


def test_unknown_and_bad_architectures_are_one_line_errors():
    for name, match in [("resnet9000", "unknown"), ("tests.test_models:not_a_module", "nn.Module"),
                        ("no_such_pkg.mod:f", "cannot import")]:
        with pytest.raises(UserInputError, match=match) as info:
            build_architecture(name, 3, (1, 4, 4))
        assert "\n" not in str(info.value)
    with pytest.raises(UserInputError, match="too small"):
        build_architecture("small-cnn", 10, (1, 8, 8))
    with pytest.raises(UserInputError, match=r"returned \(1, 3\)"):
        build_architecture("tests.test_models:fixed_factory", 5, (1, 4, 4))
    model = build_architecture("tests.test_models:tiny_factory", 5, (1, 4, 4))
    assert model(torch.rand(1, 1, 4, 4)).shape == (1, 5)


def test_save_load_round_trip(tmp_path):
    model = build_architecture("mlp-tiny", 3, (1, 4, 4))
    save_classifier(model, tmp_path / "clf", {"arch": "mlp-tiny", "num_classes": 3, "image_shape": [1, 4, 4]})
    loaded = load_classifier(tmp_path / "clf")
    x = torch.rand(5, 1, 4, 4)
    assert not loaded.training
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(UserInputError, match="lacks arch"):
        save_classifier(model, tmp_path / "bad", {"num_classes": 3, "image_shape": [1, 4, 4]})


def test_factory_spec_with_foreign_weights(tmp_path):
    source = tiny_factory()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded = load_classifier("tests.test_models:tiny_factory", weights=tmp_path / "w.pt")
    x = torch.rand(4, 1, 4, 4)
    assert torch.equal(loaded(x), source(x))


def test_mismatched_weights_name_the_keys_in_one_line(tmp_path):
    save_classifier(build_architecture("mlp-tiny", 3, (1, 4, 4)), tmp_path / "clf",
                    {"arch": "mlp-tiny", "num_classes": 3, "image_shape": [1, 4, 4]})
    with pytest.raises(UserInputError, match=r"2 unexpected key\(s\) \(3.bias, 3.weight\)") as info:
        load_classifier("tests.test_models:tiny_factory", weights=tmp_path / "clf" / "model.safetensors")
    assert "\n" not in str(info.value)
    torch.save(tiny_factory().state_dict(), tmp_path / "small.pt")
    with pytest.raises(UserInputError, match=r"2 missing key\(s\) \(3.weight, 3.bias\)"):
        load_classifier(tmp_path / "clf", weights=tmp_path / "small.pt")
    with pytest.raises(UserInputError, match="no config.json"):
        load_classifier(tmp_path)
    with pytest.raises(UserInputError, match="not a directory"):
        load_classifier(tmp_path / "nope")
