"""BigGAN-128 in the released layout: key names and shapes, decode scaling/resizing, strict loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators import check_generator
from intrinsic_robustness.generators.biggan import (
    PAPER_CLASS_IDS,
    BigGAN,
    SNConv2d,
    load_biggan128,
    standing_stats,
)
from intrinsic_robustness.generators.load import load_generator, save_generator

TINY = {"ch": 4, "embed_dim": 8}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return BigGAN(**TINY).eval()


def test_full_size_keys_and_shapes_match_the_release():
    with torch.device("meta"):
        sd = BigGAN().state_dict()
    ch = 96
    expected = {
        "linear.weight": (1000, 128),
        "g_z.g_linear.weight_orig": (4 * 4 * 16 * ch, 20),
        "g_z.g_linear.weight_u": (4 * 4 * 16 * ch,),
        "g_z.g_linear.weight_v": (20,),
        "gblock.conv0.weight_orig": (16 * ch, 16 * ch, 3, 3),
        "gblock.conv0.weight_v": (16 * ch * 9,),
        "gblock.conv_sc.weight_orig": (16 * ch, 16 * ch, 1, 1),
        "gblock.hyperbn.gamma.weight_orig": (16 * ch, 148),
        "gblock.hyperbn.crossreplicabn.standing_means": (50, 16 * ch),
        "gblock.hyperbn.crossreplicabn.running_var": (16 * ch,),
        "gblock_1.hyperbn_1.beta.weight_orig": (8 * ch, 148),
        "gblock_4.conv1.weight_orig": (ch, ch, 3, 3),
        "attention.theta.weight_orig": (ch // 4, 2 * ch, 1, 1),
        "attention.g.weight_orig": (ch, 2 * ch, 1, 1),
        "attention.o_conv.weight_orig": (2 * ch, ch, 1, 1),
        "attention.gamma": (1,),
        "scaledcrossreplicabn.weight": (ch,),
        "scaledcrossreplicabn.standing_vars": (50, ch),
        "conv_2d.weight_orig": (3, ch, 3, 3),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.endswith(".weight") and k.replace(".weight", ".weight_orig") in sd for k in sd)
    assert "gblock.hyperbn.gamma.bias" not in sd and "attention.theta.bias" not in sd
    assert "gblock.hyperbn.crossreplicabn.weight" not in sd  # affine=False inside HyperBN
    assert "_ids" not in sd


def test_contract_and_paper_class_mapping(tiny):
    assert (tiny.latent_dim, tiny.num_classes, tiny.image_shape) == (120, 10, (3, 32, 32))
    assert tiny.class_ids == list(PAPER_CLASS_IDS)
    check_generator(tiny)


def test_decode_is_tanh_rescaled_and_nearest_resized_like_the_paper(tiny):
    z = tiny.sample_latent(3, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 4, 9])
    with torch.no_grad():
        raw = tiny.raw(z, torch.tensor([404, 351, 717]))
        x = tiny.decode(z, y)
    assert raw.shape == (3, 3, 128, 128)
    # F.interpolate(size=32), nearest, keeps every 4th pixel starting at 0
    torch.testing.assert_close(x, (raw[:, :, ::4, ::4] + 1) / 2)


def test_area_resize_averages_4x4_blocks():
    torch.manual_seed(1)
    gen = BigGAN(**TINY, resize="area").eval()
    z, y = gen.sample_latent(2), torch.tensor([1, 2])
    with torch.no_grad():
        raw = gen.raw(z, gen._ids[y])
        torch.testing.assert_close(gen.decode(z, y), (F.avg_pool2d(raw, 4) + 1) / 2, rtol=1e-5, atol=1e-6)


def test_nearest_upsampling_equals_the_release_depth_to_space():
    x = torch.randn(2, 3, 4, 5)
    n, c, h, w = x.shape
    tiled = torch.cat([x, x, x, x], dim=1)  # the release copies 4 times and moves depth to space
    d2s = tiled.view(n, 2, 2, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c, 2 * h, 2 * w)
    torch.testing.assert_close(F.interpolate(x, scale_factor=2, mode="nearest"), d2s)


def test_spectral_norm_divides_by_the_largest_singular_value():
    torch.manual_seed(0)
    conv = SNConv2d(5, 7, 3).eval()
    w = conv.normalized_weight()
    mat = w.permute(0, 2, 3, 1).reshape(7, -1)
    assert abs(torch.linalg.matrix_norm(mat, ord=2).item() - 1.0) < 5e-3  # power iteration, 20 steps


def test_standing_statistics_index():
    stack = torch.arange(50.0).unsqueeze(1)
    assert standing_stats(stack, 1.0).item() == 49.0
    assert standing_stats(stack, 0.5).item() == 24.0
    with pytest.raises(UserInputError, match="truncation"):
        standing_stats(stack, 1.5)


def test_strict_loading_of_a_saved_state_dict(tmp_path, tiny):
    path = tmp_path / "g.pth"
    torch.save(tiny.state_dict(), path)
    loaded = load_biggan128(path, **TINY).eval()
    z, y = torch.randn(2, 120), torch.tensor([3, 7])
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z, y), tiny.decode(z, y), rtol=0, atol=0)


def test_wrong_or_missing_keys_are_clear_errors(tmp_path, tiny):
    state = dict(tiny.state_dict())
    state["attention.o.weight_orig"] = state.pop("attention.o_conv.weight_orig")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(UserInputError, match=r"missing key\(s\) \(attention.o_conv.weight_orig\).*unexpected"):
        load_biggan128(tmp_path / "renamed.pth", **TINY)
    torch.save({"shared.weight": torch.zeros(2), "linear.u0": torch.zeros(2)}, tmp_path / "ajbrock.pth")
    with pytest.raises(UserInputError, match="ajbrock"):
        load_biggan128(tmp_path / "ajbrock.pth", **TINY)
    torch.save(tiny.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(UserInputError, match="wrong shape"):
        load_biggan128(tmp_path / "tiny.pth", ch=8, embed_dim=8)


def test_missing_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("IROB_DATA", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserInputError, match=r"IROB_DATA/biggan/biggan128-release.pt"):
        load_generator("biggan128")


def test_saved_directory_round_trip(tmp_path, tiny):
    save_generator(tiny, tmp_path / "bg", tiny.config())
    loaded = load_generator(str(tmp_path / "bg"))
    z, y = torch.randn(2, 120), torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(z, y), tiny.decode(z, y), rtol=0, atol=0)
