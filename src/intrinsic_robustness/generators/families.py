"""The generator architectures a saved ``generator.json`` may name, and the names a spec may use directly.

``FAMILIES`` maps an ``architecture`` entry (acgan, flow, biggan, affine) to a builder of an untrained generator
from that config; ``NAMED`` maps a spec name (``affine``, ``biggan128``) to a loader taking an optional
weights file. A new family is one builder function and one registration here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.registry import Registry

FAMILIES: Registry[Callable[[Mapping[str, Any]], nn.Module]] = Registry("generator architecture")
NAMED: Registry[Callable[[str | None], nn.Module]] = Registry("generator name")


@FAMILIES.register("acgan", label="ACGAN (Odena et al.; the paper's MNIST generator)")
def _acgan(config: Mapping[str, Any]) -> nn.Module:
    from intrinsic_robustness.generators.acgan import build_acgan

    return build_acgan(dict(config))


@FAMILIES.register("biggan", label="BigGAN-128 (TF-Hub weights in the ivclab layout)")
def _biggan(config: Mapping[str, Any]) -> nn.Module:
    from intrinsic_robustness.generators.biggan import build_biggan

    return build_biggan(dict(config))


@FAMILIES.register("flow", label="class-conditional flow matching, fixed-step ODE sampler (latent = C*H*W)")
def _flow(config: Mapping[str, Any]) -> nn.Module:
    from intrinsic_robustness.generators.flow import build_flow

    return build_flow(dict(config))


@FAMILIES.register("affine", label="affine reference clamp(A z + b_y)")
def _affine(config: Mapping[str, Any]) -> nn.Module:
    from intrinsic_robustness.generators.affine import AffineGenerator

    shape = tuple(int(s) for s in config["image_shape"])
    n_pixels = shape[0] * shape[1] * shape[2]
    return AffineGenerator(torch.zeros(n_pixels, int(config["latent_dim"])),
                           torch.zeros(int(config["num_classes"]), n_pixels), shape)  # type: ignore[arg-type]


@NAMED.register("affine", label="the seeded affine reference (8-d latent, 3 classes, 6x6)")
def _named_affine(weights: str | None) -> nn.Module:
    from intrinsic_robustness.generators.affine import make_affine
    from intrinsic_robustness.weights import load_state_strict, read_weights

    gen = make_affine()
    if weights is not None:
        load_state_strict(gen, read_weights(weights), source=weights)
    return gen


@NAMED.register("biggan128", label="the paper's BigGAN-128 (local weights file)")
def _named_biggan(weights: str | None) -> nn.Module:
    from intrinsic_robustness.generators.biggan import load_biggan128

    return load_biggan128(weights)
