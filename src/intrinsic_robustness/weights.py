"""Reading state dicts safely and loading them strictly, shared by generators and classifiers.

Weights come from safetensors or, for foreign files, ``torch.load(weights_only=True)``: nothing that can
execute code is unpickled. Loading checks every name and shape and fails with one line naming a few.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import load_tensors


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A state dict from safetensors, or from a torch file read with ``weights_only=True`` (no code runs)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserInputError(f"{p}: weights file not found")
    if p.suffix == ".safetensors":
        return load_tensors(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input
        first = " ".join(str(exc).split())[:200]
        raise UserInputError(f"{p}: not a readable torch state dict with weights_only=True ({first})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserInputError(f"{p}: expected a flat state dict of tensors")
    return dict(obj)


def load_state_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str = "weights") -> None:
    """Load ``state`` into ``module``; missing/unexpected keys or wrong shapes are one clear line."""
    own = module.state_dict()
    state = dict(state)
    for key in own:  # batch-norm step counters do not affect outputs; older torch files lack them
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
        raise UserInputError(f"{source}: weights do not match the architecture: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise UserInputError(f"{source}: {len(wrong)} tensor(s) with the wrong shape ({_few(wrong)}); "
                             "the weights belong to another configuration")
    module.load_state_dict(state, strict=True)


def _few(items: list[str], k: int = 3) -> str:
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """An optimizer's state as ``prefix/<param index>/<name>`` tensors plus JSON (param groups, scalars).

    The one encoding every safetensors checkpoint uses (no pickle): tensors go in the file, everything
    else in its string metadata. :func:`restore_optimizer` is the inverse.
    """
    import json

    state = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, object]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}/{index}/{name}"] = value.detach().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, json.dumps({"param_groups": state["param_groups"], "scalars": scalars})


def restore_optimizer(opt: torch.optim.Optimizer, prefix: str, tensors: Mapping[str, torch.Tensor],
                      info: str) -> None:
    """Load what :func:`optimizer_tensors` wrote back into ``opt``."""
    import json

    data = json.loads(info)
    state: dict[int, dict[str, object]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in data.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = data["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    opt.load_state_dict({"state": state, "param_groups": groups})


def checkpoint_metadata(path: Path, expected: str, what: str) -> dict[str, str]:
    """The metadata of a training checkpoint, refused in one line if unreadable or of another format.

    ``what`` names the checkpoint in the message (e.g. "an ACGAN training checkpoint").
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserInputError(f"{path}: unreadable checkpoint ({exc}); delete it or pass --force") from None
    if meta.get("format") != expected:
        raise UserInputError(f"{path}: format {meta.get('format')!r}, this version reads {expected!r}: not "
                             f"{what} it can resume; choose another --out or pass --force")
    return meta
