"""Per-epoch checkpoints in one safetensors file: model weights, optimizer state and the epoch; no pickle.

Optimizer tensors are stored as ``optim/<param index>/<name>``; its non-tensor state (hyper-parameters,
scalars) travels as JSON in the safetensors metadata, beside the epoch and the run's settings fingerprint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.io import load_tensors, save_tensors


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{name}"] = value.detach().clone()
            else:
                scalars.setdefault(str(index), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entry in info.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    return {"state": state, "param_groups": info["param_groups"]}


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, fingerprint: str) -> None:
    """Atomically write the state after ``epoch`` completed epochs."""
    tensors = {f"model/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    opt_tensors, info = _split_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    metadata = {"epoch": str(int(epoch)), "fingerprint": fingerprint, "optimizer": json.dumps(info)}
    save_tensors(path, tensors, metadata=metadata)


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, str]:
    """The checkpoint's metadata (epoch, fingerprint) without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for truncated files
        raise UserInputError(f"{path}: unreadable checkpoint ({exc}); pass --force to restart training") from None


def load_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer,
                    device: torch.device) -> int:
    """Restore model and optimizer from ``path``; returns the number of completed epochs."""
    meta = read_checkpoint_meta(path)
    tensors = load_tensors(Path(path), device=str(device))
    weights = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(_join_optimizer(tensors, json.loads(meta["optimizer"])))
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserInputError(f"{path}: checkpoint does not match this run ({' '.join(str(exc).split())[:160]}); "
                             "pass --force to restart training") from None
    return int(meta["epoch"])
