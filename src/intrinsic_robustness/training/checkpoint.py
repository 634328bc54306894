"""Per-epoch checkpoints in one safetensors file: model weights, optimizer state and the epoch; no pickle.

Optimizer state uses the one encoding of :func:`intrinsic_robustness.weights.optimizer_tensors` (prefix
``optim``), beside the epoch and the run's settings fingerprint in the safetensors metadata.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from intrinsic_robustness.errors import UserInputError
from intrinsic_robustness.storage import load_tensors, save_tensors
from intrinsic_robustness.weights import optimizer_tensors, restore_optimizer


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, optimizer: torch.optim.Optimizer,
                    epoch: int, fingerprint: str) -> None:
    """Atomically write the state after ``epoch`` completed epochs."""
    tensors = {f"model/{k}": v.detach().clone() for k, v in model.state_dict().items()}
    opt_tensors, info = optimizer_tensors(optimizer, "optim")
    tensors.update(opt_tensors)
    metadata = {"epoch": str(int(epoch)), "fingerprint": fingerprint, "optimizer": info}
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
        restore_optimizer(optimizer, "optim", tensors, meta["optimizer"])
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UserInputError(f"{path}: checkpoint does not match this run ({' '.join(str(exc).split())[:160]}); "
                             "pass --force to restart training") from None
    return int(meta["epoch"])
