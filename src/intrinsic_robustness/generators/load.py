"""Turn a generator spec into a checked module, and save generators so that spec can name them again.

A spec is one of: a directory written by :func:`save_generator` (``generator.json`` naming the
architecture + ``generator.safetensors``), ``package.module:factory`` (optionally with a weights file:
safetensors, or a torch state dict read with ``weights_only=True``), or the names ``affine`` and
``biggan128``. Weights always load strictly: missing or unexpected keys are a one-line error.

A file never runs code by itself: a ``generator.json`` naming ``"architecture": "factory"`` (or a factory spec
read from another file, ``named_by``) loads only with ``trust_code=True`` (see ``plugins.require_trust``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.generators.families import FAMILIES, NAMED
from intrinsic_robustness.generators.protocol import CONTRACT, check_generator
from intrinsic_robustness.hashing import state_checksum
from intrinsic_robustness.plugins import build_from_factory, is_factory_spec, require_trust
from intrinsic_robustness.storage import read_versioned, save_tensors, write_json
from intrinsic_robustness.weights import load_state_strict, read_weights

CONFIG_FILE = "generator.json"
WEIGHTS_FILE = "generator.safetensors"
FORMAT = "irob-generator/1"


def save_generator(gen: nn.Module, directory: str | os.PathLike[str], config: dict[str, Any]) -> Path:
    """Write ``generator.safetensors`` and ``generator.json`` (``config`` must name its ``architecture``)."""
    if "architecture" not in config:
        raise ValueError("save_generator: config needs an 'architecture' key (acgan, affine, biggan or factory)")
    directory = Path(directory)
    state = gen.state_dict()
    save_tensors(directory / WEIGHTS_FILE, state)
    write_json(directory / CONFIG_FILE, {"format": FORMAT, **config, "weights_sha256": state_checksum(state)})
    return directory


def load_generator(spec: str, weights: str | None = None, device: str | torch.device = "cpu",
                   trust_code: bool = False, named_by: str | None = None) -> nn.Module:
    """Build the generator named by ``spec``, load ``weights`` strictly, move it to ``device`` and check it.

    ``named_by``: the file ``spec`` was read from (a manifest, a config); a factory it names, like a factory in
    a saved ``generator.json``, loads only with ``trust_code``. A spec typed by the user needs no trust.
    """
    spec = str(spec)
    if not spec.strip():
        raise UserInputError("generator spec '': empty; give a directory saved by irob, 'package.module:factory' "
                             f"or one of {', '.join(NAMED.names())}")
    path = Path(spec).expanduser()
    if path.is_dir():
        gen = _from_directory(path, weights, trust_code)
    elif spec in NAMED:
        gen = NAMED.get(spec)(weights)
    elif is_factory_spec(spec):
        if named_by is not None:
            require_trust(named_by, spec, trust_code)
        gen = _with_weights(_module(build_from_factory(spec, what="generator"), spec), weights)
    elif path.exists() or os.sep in spec or spec.startswith("."):
        raise UserInputError(f"generator spec {spec!r}: not a directory written by irob "
                             f"(expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
    else:
        raise UserInputError(f"generator spec {spec!r}: expected a directory saved by irob, "
                             f"'package.module:factory' or one of {', '.join(NAMED.names())}")
    gen = gen.to(torch.device(device)).eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    try:
        check_generator(gen, name=f"generator {spec!r}")
    except UserInputError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code (decode, sample_latent) may raise anything
        raise UserInputError(f"generator {spec!r}: the contract check raised {type(exc).__name__}: "
                             f"{' '.join(str(exc).split())}; a generator needs {CONTRACT}") from None
    return gen


def _module(gen: object, spec: str) -> nn.Module:
    if not isinstance(gen, nn.Module):
        raise UserInputError(f"generator spec {spec!r}: the factory returned {type(gen).__name__}, "
                             "expected a torch.nn.Module")
    return gen


def _from_directory(path: Path, weights: str | None, trust_code: bool = False) -> nn.Module:
    if not (path / CONFIG_FILE).is_file():
        raise UserInputError(f"{path}: no {CONFIG_FILE}; pass a directory written by 'irob train-generator' "
                             "or save_generator")
    config = read_versioned(path / CONFIG_FILE, FORMAT, required=False)  # hand-written factory files may omit it
    gen = build_from_config(config, source=str(path / CONFIG_FILE), trust_code=trust_code)
    return _with_weights(gen, weights or str(path / WEIGHTS_FILE))


def build_from_config(config: Mapping[str, Any], source: str = "config", trust_code: bool = False) -> nn.Module:
    """Rebuild an (untrained) generator from the ``architecture`` entry of a saved config.

    Built-in architectures (``FAMILIES``) only, unless ``trust_code``: then ``"factory"`` may name user code.
    """
    arch = config.get("architecture")
    if arch != "factory" and arch not in FAMILIES:
        raise UserInputError(f"{source}: unknown architecture {arch!r}; expected one of "
                             f"{', '.join(FAMILIES.names())} or factory")
    try:
        if arch == "factory":
            spec = str(config["factory"])
            require_trust(source, spec, trust_code)
            kwargs = config.get("kwargs", {})
            if not isinstance(kwargs, dict):
                raise UserInputError(f"{source}: kwargs must be a JSON object of keyword arguments")
            return _module(build_from_factory(spec, what="generator", **kwargs), spec)
        return FAMILIES.get(str(arch))(config)
    except KeyError as exc:
        raise UserInputError(f"{source}: missing entry {exc} for architecture {arch!r}") from None
    except UserInputError:
        raise
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise UserInputError(f"{source}: cannot build architecture {arch!r} ({' '.join(str(exc).split())})") from None


def _with_weights(gen: nn.Module, weights: str | None) -> nn.Module:
    if weights is not None:
        load_state_strict(gen, read_weights(weights), source=weights)
    return gen


def generator_info(spec: str, gen: nn.Module, weights: str | None = None) -> dict[str, Any]:
    """What a dataset manifest records about its generator: spec, weights file and a checksum."""
    info: dict[str, Any] = {"spec": str(spec), "weights": str(weights) if weights else None,
                            "weights_sha256": state_checksum(gen.state_dict()),
                            "latent_dim": int(gen.latent_dim), "num_classes": int(gen.num_classes),
                            "image_shape": [int(s) for s in gen.image_shape]}
    config = getattr(gen, "config", None)
    if callable(config):
        info["config"] = config()
    return info
