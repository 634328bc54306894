"""Save and load classifiers: a directory with ``config.json`` + ``model.safetensors``, or ``module:factory``.

Weights are read as safetensors (or, for foreign state dicts, ``torch.load(weights_only=True)``); nothing
that can execute code is unpickled. The config names the architecture, so loading rebuilds the network
and checks every weight name and shape, failing with one line on a mismatch. A config naming user code
(``package.module:factory``) loads only with ``trust_code=True``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.models.architectures import ARCHITECTURES, build_architecture
from intrinsic_robustness.plugins import build_from_factory, is_factory_spec, require_trust
from intrinsic_robustness.storage import load_tensors, read_versioned, save_tensors, write_json
from intrinsic_robustness.weights import load_state_strict, read_weights

FORMAT = "irob-classifier/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def save_classifier(model: nn.Module, directory: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Write ``model.safetensors`` then ``config.json`` (written last: its presence marks a finished model).

    ``config`` must name ``arch`` (an architecture name or ``module:factory``), ``num_classes`` and
    ``image_shape`` so :func:`load_classifier` can rebuild the network.
    """
    missing = [k for k in ("arch", "num_classes", "image_shape") if k not in config]
    if missing:
        raise UserInputError(f"save_classifier: config lacks {', '.join(missing)}; add them so the model can be "
                             "rebuilt")
    out = Path(directory)
    # Clones break shared storage (tied weights), which safetensors refuses to write.
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_tensors(out / WEIGHTS_FILE, state, metadata={"format": FORMAT})
    write_json(out / CONFIG_FILE, {"format": FORMAT, **dict(config)})
    return out


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """Load ``state`` strictly (see :func:`intrinsic_robustness.weights.load_state_strict`); returns ``model``."""
    load_state_strict(model, state, source=f"weights {source}")
    return model


def _from_directory(path: Path, trust_code: bool = False) -> nn.Module:
    if not (path / CONFIG_FILE).is_file():
        raise UserInputError(f"classifier {path}: no {CONFIG_FILE}; pass a directory written by "
                             "'irob train-classifier' (an unfinished run has only a checkpoint; rerun to finish it)")
    source = f"{path / CONFIG_FILE}"
    config = read_versioned(path / CONFIG_FILE, FORMAT)
    try:
        arch, num_classes, shape = str(config["arch"]), int(config["num_classes"]), list(config["image_shape"])
    except KeyError as exc:
        raise UserInputError(f"classifier {source}: missing entry {exc}; the file is damaged, retrain") from None
    except (TypeError, ValueError) as exc:
        raise UserInputError(f"classifier {source}: bad arch/num_classes/image_shape ({exc})") from None
    if arch not in ARCHITECTURES:
        if not is_factory_spec(arch):
            raise UserInputError(f"classifier {source}: unknown architecture {arch!r}; expected one of "
                                 f"{', '.join(ARCHITECTURES.names())}")
        require_trust(source, arch, trust_code)
    model = build_architecture(arch, num_classes, shape)
    return load_weights(model, load_tensors(path / WEIGHTS_FILE), str(path / WEIGHTS_FILE))


def load_classifier(spec: str | os.PathLike[str], device: str | torch.device = "cpu",
                    weights: str | os.PathLike[str] | None = None, trust_code: bool = False) -> nn.Module:
    """A classifier in eval mode on ``device`` from a saved directory or a ``module:factory`` spec.

    ``weights`` (optional) replaces the weights: safetensors, or a foreign weights-only state dict. A saved
    directory whose ``config.json`` names a factory (user code) loads only with ``trust_code``.
    """
    text = os.fspath(spec)
    path = Path(text)
    if not text.strip():
        raise UserInputError("classifier '': empty; give a directory written by 'irob train-classifier' or "
                             "'package.module:factory'")
    if path.is_dir():
        model = _from_directory(path, trust_code)
    elif is_factory_spec(text):
        model = build_from_factory(text, "classifier")
        if not isinstance(model, nn.Module):
            raise UserInputError(f"classifier spec {text!r}: the factory returned {type(model).__name__}, "
                                 "expected a torch.nn.Module")
    else:
        raise UserInputError(f"classifier {text!r}: not a directory written by 'irob train-classifier' nor "
                             "'package.module:factory'")
    if weights is not None:
        load_weights(model, read_weights(weights), os.fspath(weights))
    return model.to(torch.device(device)).eval()
