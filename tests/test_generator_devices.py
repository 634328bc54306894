"""The contract's sample_latent draws on the seed's device, wherever the module lives (found on a GPU: the
affine reference drew on its weights' device and failed with a CPU seed under --device cuda)."""

from __future__ import annotations

import pytest
import torch

from intrinsic_robustness.generators.acgan import ACGANGenerator
from intrinsic_robustness.generators.affine import make_affine
from intrinsic_robustness.generators.biggan import BigGAN


def _builtin() -> list[torch.nn.Module]:
    return [make_affine(), ACGANGenerator(latent_dim=8, num_classes=3, image_shape=(1, 8, 8), width=4, hidden=8),
            BigGAN(ch=4, embed_dim=8, n_imagenet_classes=10, class_ids=(0, 1, 2), output_size=32)]


@pytest.mark.parametrize("index", range(3))
def test_sample_latent_follows_the_seed_not_the_module(index: int) -> None:
    gen = _builtin()[index].to("meta")  # a module on another device than the CPU seed
    z = gen.sample_latent(3, generator=torch.Generator().manual_seed(0))
    assert z.device.type == "cpu" and tuple(z.shape) == (3, int(gen.latent_dim))
    assert torch.equal(z, gen.sample_latent(3, generator=torch.Generator().manual_seed(0)))
